/**
 * Where pictures come from: the camera (`getUserMedia`), or a video or image file the user
 * chooses when there is no camera.
 */

/** A drawable picture source with its size in pixels. */
export class PictureSource {
  /**
   * @param {HTMLVideoElement | HTMLImageElement} element
   * @param {() => void} release  frees what the source holds (camera tracks, object URLs)
   */
  constructor(element, release) {
    this.element = element;
    this.release = release;
  }

  /** Width in pixels (0 until the first picture is known). */
  get width() {
    return this.element.videoWidth ?? this.element.naturalWidth;
  }

  /** Height in pixels. */
  get height() {
    return this.element.videoHeight ?? this.element.naturalHeight;
  }
}

/**
 * Open the default camera into `video`.
 * @param {HTMLVideoElement} video
 * @returns {Promise<PictureSource>}
 * @throws {Error} saying why there is no camera picture (no device, permission denied, ...)
 */
export async function openCamera(video) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error("this browser gives no camera access here (it needs https or localhost)");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    const reasons = {
      NotFoundError: "no camera was found",
      NotAllowedError: "camera access was denied",
      NotReadableError: "the camera is in use by another program",
    };
    throw new Error(reasons[error.name] ?? `the camera could not be opened (${error.message})`);
  }
  video.srcObject = stream;
  await playVideo(video);
  return new PictureSource(video, () => {
    stream.getTracks().forEach((track) => track.stop());
    video.srcObject = null;
  });
}

/**
 * Open a video (played in a loop) or an image file.
 * @param {File} file
 * @param {HTMLVideoElement} video
 * @param {HTMLImageElement} image
 * @returns {Promise<PictureSource>}
 */
export async function openFile(file, video, image) {
  const url = URL.createObjectURL(file);
  const release = () => URL.revokeObjectURL(url);
  if (file.type.startsWith("image/")) {
    image.src = url;
    await image.decode().catch(() => {
      release();
      throw new Error(`${file.name} is not an image this browser can read`);
    });
    return new PictureSource(image, release);
  }
  video.src = url;
  video.loop = true;
  await playVideo(video).catch((error) => {
    release();
    throw new Error(`${file.name} could not be played (${error.message})`);
  });
  return new PictureSource(video, () => {
    video.pause();
    video.removeAttribute("src");
    release();
  });
}

async function playVideo(video) {
  video.muted = true;
  await video.play();
  if (!video.videoWidth) {
    await new Promise((resolve) => video.addEventListener("loadedmetadata", resolve, { once: true }));
  }
}
