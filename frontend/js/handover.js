/**
 * Detection on this device while the GPU boots, and the hand-over to the server: the browser
 * detector runs on the current picture, one result after another, until the page has drawn the
 * server's first result; then it stops and frees its session. Until then the page keeps drawing
 * the device's last result, so no picture goes without overlays and nothing flashes.
 */

import { BrowserDetector, PROVIDER_WORDS } from "./browser_detector.js";

export class LocalDetection {
  /** "loading", "running", "failed" or "stopped". */
  state = "loading";
  /** The last result (`inference`-shaped) and the capture time of its picture. */
  result = null;
  resultAt = 0;
  /** The detector once loaded: its provider and descriptor (licence, classes). */
  detector = null;
  error = null;
  /** When each step of the cold start ended (performance.now()): `fetched` (runtime and model),
   * `session` (created), `inference` (the first result). */
  marks = {};
  #picture;
  #onChange;

  /**
   * @param {() => ({element: CanvasImageSource, width: number, height: number} | null)} picture
   *   the current picture source, if any
   * @param {(local: LocalDetection) => void} onChange  called when the state or detector changes
   * @param {() => Promise<BrowserDetector>} [load]  how the detector is loaded
   */
  constructor(picture, onChange, load = BrowserDetector.load) {
    this.#picture = picture;
    this.#onChange = onChange;
    this.#run(load);
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

  #mark(step) {
    this.marks[step] = performance.now();
  }

  async #run(load) {
    try {
      this.detector = await load((step) => this.#mark(step));
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
        if (!this.marks.inference) this.#mark("inference");
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
