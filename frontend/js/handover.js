/**
 * Detection on this device while the GPU boots, and the hand-over to the server: the browser
 * detector runs on the current picture, one result after another, until the page has drawn the
 * server's first result; then it stops and frees its session. Until then the page keeps drawing
 * the device's last result, so no picture goes without overlays and nothing flashes.
 *
 * The detector can start loading before Start (`startLoading`): the page of a deployment that
 * cold-starts loads it as it opens, so it is ready, or nearly, when the user presses Start.
 */

import { BrowserDetector, PROVIDER_WORDS } from "./browser_detector.js";

/**
 * Start loading a detector now.
 * @param {object} [options]
 * @param {() => boolean} [options.warmUp]  asked once the session is open: run it once on a
 *   blank picture first (worth it only while nobody waits for a result)
 * @param {(marks: Record<string, number>) => Promise<BrowserDetector>} [options.load]
 * @returns {{marks: Record<string, number>, detector: Promise<BrowserDetector>}} the detector to
 *   come and when each step of its loading ended (performance.now()): `began`, the load's, `warm`
 */
export function startLoading({ warmUp = () => false, load = BrowserDetector.load } = {}) {
  const marks = { began: performance.now() };
  const detector = load(marks).then(async (loaded) => {
    if (warmUp()) {
      await loaded.warmUp();
      marks.warm = performance.now();
    }
    return loaded;
  });
  detector.catch(() => {}); // a failure is shown once a cold start uses this detector
  return { marks, detector };
}

export class LocalDetection {
  /** "loading", "running", "failed" or "stopped". */
  state = "loading";
  /** The last result (`inference`-shaped) and the capture time of its picture. */
  result = null;
  resultAt = 0;
  /** The detector once loaded: its provider and descriptor (licence, classes). */
  detector = null;
  error = null;
  /** When each step ended (performance.now()): the loading's (`startLoading`), then
   * `inference` (the first result on a picture). */
  marks;
  #picture;
  #onChange;

  /**
   * @param {() => ({element: CanvasImageSource, width: number, height: number} | null)} picture
   *   the current picture source, if any
   * @param {(local: LocalDetection) => void} onChange  called when the state or detector changes
   * @param {ReturnType<typeof startLoading>} [loading]  the detector, loading since then
   */
  constructor(picture, onChange, loading = startLoading()) {
    this.#picture = picture;
    this.#onChange = onChange;
    this.marks = loading.marks;
    this.#run(loading.detector);
  }

  /** The device's overlays to draw now, as `pickOverlays` returns them, or null. */
  scene() {
    if (this.state !== "running" || !this.result) return null;
    const result = this.result;
    return { result, boxes: result.yolo.boxes, frames: 0, held: result, heldAt: this.resultAt };
  }

  /** The badge's words: where the detections come from, on what, and the weights' licence. */
  describe() {
    if (!this.detector) return "";
    const { provider, descriptor } = this.detector;
    return `on this device (${PROVIDER_WORDS[provider]}), until the GPU server is ready; weights: ${descriptor.source.detail}, licence ${descriptor.licence}`;
  }

  /** Stop detecting (the server took over, or the user pressed Stop); the session is freed. */
  stop() {
    if (this.state === "stopped") return;
    this.state = "stopped";
    this.result = null;
    this.#onChange(this);
  }

  async #run(loading) {
    try {
      this.detector = await loading;
    } catch (error) {
      this.error = error.message;
      if (this.state !== "stopped") this.state = "failed";
      this.#onChange(this);
      return;
    }
    if (this.state === "loading") this.state = "running";
    this.#onChange(this);
    try {
      while (this.state === "running") {
        const source = this.#picture();
        if (!source?.width) {
          await nextFrame();
          continue;
        }
        const at = performance.now();
        const result = await this.detector.detect(source.element, source.width, source.height);
        if (this.state !== "running") break;
        this.result = result;
        this.resultAt = at;
        this.marks.inference ??= performance.now();
        await nextFrame(); // let the page draw it before the next run takes the CPU
      }
    } catch (error) {
      this.error = error.message;
      this.state = "failed";
      this.#onChange(this);
    } finally {
      await this.detector.release();
    }
  }
}

function nextFrame() {
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}
