/**
 * Copies each new video frame into a `FrameHistory`, once per distinct frame: through
 * `requestVideoFrameCallback` where the browser has it, else whenever the video's time moved
 * when the render loop asks (`poll`). Copies are canvases, reused once the history drops them.
 */

import { FrameHistory } from "./frame_history.js";

export class FrameRecorder {
  #pool = [];
  #video = null;
  #callback = 0;
  #lastTime = -1;

  constructor() {
    this.history = new FrameHistory({ release: ({ element }) => this.#pool.push(element) });
  }

  /**
   * Record `video`'s frames from now on (a still image has none: nothing is recorded).
   * @param {HTMLVideoElement | HTMLImageElement | null} element
   */
  start(element) {
    this.stop();
    if (!(element instanceof HTMLVideoElement)) return;
    this.#video = element;
    if ("requestVideoFrameCallback" in element) this.#onVideoFrame();
  }

  /** Stop recording and forget the pictures. */
  stop() {
    if (this.#video && this.#callback) this.#video.cancelVideoFrameCallback(this.#callback);
    this.#video = null;
    this.#callback = 0;
    this.#lastTime = -1;
    this.history.clear();
  }

  /** Whether pictures are being recorded (a video source). */
  get recording() {
    return this.#video !== null;
  }

  /**
   * Without `requestVideoFrameCallback`: record the frame if the video moved on since the last.
   * @param {number} now  performance.now()
   */
  poll(now) {
    const video = this.#video;
    if (!video || this.#callback || video.currentTime === this.#lastTime) return;
    this.#lastTime = video.currentTime;
    this.#record(now);
  }

  #onVideoFrame = () => {
    this.#callback = this.#video.requestVideoFrameCallback((now) => {
      this.#record(now);
      this.#onVideoFrame();
    });
  };

  #record(now) {
    const video = this.#video;
    const { videoWidth: width, videoHeight: height } = video;
    if (!width || !height) return;
    const canvas = this.#pool.pop() ?? document.createElement("canvas");
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    canvas.getContext("2d").drawImage(video, 0, 0, width, height);
    this.history.add(now, { element: canvas, width, height }, 4 * width * height);
  }
}
