/**
 * Where pictures come from: the camera (`getUserMedia`), or a video or image file the user
 * chooses. Each source gets its own element, so a new one can be tried while the current one
 * keeps running, and `CurrentPicture` swaps them only once the new one shows a picture.
 */

/** A drawable picture source with its size in pixels. */
export class PictureSource {
  /**
   * Called once if the source stops giving pictures by itself (camera unplugged or its
   * permission withdrawn, a video that fails to decode), with the reason in words.
   * @type {((reason: string) => void) | null}
   */
  onLost = null;

  /**
   * @param {HTMLVideoElement | HTMLImageElement} element
   * @param {() => void} release  frees what the source holds (camera tracks, object URLs, element)
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

  /** @param {string} reason  why the source gives no more pictures */
  lose(reason) {
    this.onLost?.(reason);
  }
}

/**
 * The page's one picture source, if any. A new source replaces it only once it shows a picture:
 * a camera that cannot open or a file that cannot play leaves the current one running.
 */
export class CurrentPicture {
  /** @type {PictureSource | null} */
  source = null;
  #onChange;
  #opening = 0;

  /** @param {(source: PictureSource | null, lostReason?: string) => void} onChange */
  constructor(onChange) {
    this.#onChange = onChange;
  }

  /**
   * Open a new source and make it current; if a newer `use` began meanwhile, that one wins.
   * @param {() => Promise<PictureSource>} open
   * @throws {Error} from `open`, saying why there is no picture from it (the current one stays)
   */
  async use(open) {
    const opening = ++this.#opening;
    const next = await open();
    if (opening !== this.#opening) {
      next.release();
      return;
    }
    next.onLost = (reason) => {
      if (this.source === next) this.#replace(null, reason);
    };
    this.#replace(next);
  }

  #replace(next, lostReason) {
    this.source?.release();
    this.source = next;
    this.#onChange(next, lostReason);
  }
}

/**
 * Open the default camera into a new video element in `host`.
 * @param {HTMLElement} host  where source elements live (rendered but invisible)
 * @returns {Promise<PictureSource>}
 * @throws {Error} saying why there is no camera picture (no device, permission denied, ...)
 */
export async function openCamera(host) {
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
  const video = sourceElement(host, "video");
  const release = () => {
    stream.getTracks().forEach((track) => track.stop());
    video.srcObject = null;
    video.remove();
  };
  video.srcObject = stream;
  try {
    await playVideo(video);
  } catch (error) {
    release();
    throw new Error(`the camera gives no picture (${error.message})`);
  }
  const source = new PictureSource(video, release);
  for (const track of stream.getVideoTracks()) {
    track.addEventListener("ended", () => source.lose("the camera stopped (unplugged, or its access was withdrawn)"));
  }
  return source;
}

/**
 * Open a video (played in a loop) or an image file into a new element in `host`.
 * @param {File} file
 * @param {HTMLElement} host  where source elements live (rendered but invisible)
 * @returns {Promise<PictureSource>}
 * @throws {Error} naming the file and why it cannot be shown
 */
export async function openFile(file, host) {
  const kind = file.type.split("/", 1)[0];
  if (kind !== "image" && kind !== "video") {
    throw new Error(`${file.name} is neither a video nor an image (type "${file.type || "unknown"}")`);
  }
  const url = URL.createObjectURL(file);
  const element = sourceElement(host, kind === "image" ? "img" : "video");
  const release = () => {
    if (kind === "video") element.pause();
    element.removeAttribute("src");
    element.remove();
    URL.revokeObjectURL(url);
  };
  element.src = url;
  try {
    if (kind === "image") await element.decode();
    else {
      element.loop = true;
      await playVideo(element);
    }
  } catch (error) {
    release();
    const what = kind === "image" ? "an image this browser can read" : "a video this browser can play";
    throw new Error(`${file.name} is not ${what} (${error.message})`);
  }
  const source = new PictureSource(element, release);
  if (kind === "video") element.addEventListener("error", () => source.lose(`${file.name} stopped playing (it could not be decoded)`));
  return source;
}

/** A new, rendered but invisible element for a source, in `host`. */
function sourceElement(host, tag) {
  const element = host.ownerDocument.createElement(tag);
  element.className = "picture-source";
  if (tag === "video") {
    element.muted = true;
    element.playsInline = true;
  }
  host.append(element);
  return element;
}

/** Play `video` until its picture size is known; a video without a picture is refused. */
async function playVideo(video) {
  await video.play();
  if (video.readyState < HTMLMediaElement.HAVE_METADATA) {
    await new Promise((resolve) => video.addEventListener("loadedmetadata", resolve, { once: true }));
  }
  if (!video.videoWidth) throw new Error("it has no picture");
}
