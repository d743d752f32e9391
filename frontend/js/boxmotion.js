/**
 * Boxes between results: each tracked box moves on by its track's velocity (px per processed
 * frame), so overlays follow objects at render rate instead of lagging a result behind.
 */

export class BoxMotion {
  #yolo = null;
  #capturedAt = 0;
  #frameMs = null;

  /** @param {number} maxFrames  extrapolate at most this many processed frames ahead */
  constructor(maxFrames) {
    this.maxFrames = maxFrames;
  }

  /**
   * Take a new detection result.
   * @param {object | null} yolo  the result's `yolo` field
   * @param {number} capturedAt  performance.now() when its frame was captured
   */
  update(yolo, capturedAt) {
    if (this.#capturedAt > 0 && capturedAt > this.#capturedAt) {
      const interval = capturedAt - this.#capturedAt;
      this.#frameMs = this.#frameMs === null ? interval : 0.8 * this.#frameMs + 0.2 * interval;
    }
    this.#yolo = yolo;
    this.#capturedAt = capturedAt;
  }

  /** Forget the boxes (stopped, or the stage was switched off). */
  clear() {
    this.#yolo = null;
  }

  /**
   * The boxes at time `now`, in frame pixels.
   * @param {number} now  performance.now()
   * @returns {{frames: number, boxes: number[][]}} how many processed frames ahead they are
   */
  boxesAt(now) {
    const yolo = this.#yolo;
    if (!yolo) return { frames: 0, boxes: [] };
    const frames = this.#frameMs ? Math.min(this.maxFrames, Math.max(0, (now - this.#capturedAt) / this.#frameMs)) : 0;
    const boxes = yolo.boxes.map((box, i) => {
      const [vx, vy] = yolo.track_ids[i] >= 0 ? yolo.velocities[i] : [0, 0];
      return [box[0] + vx * frames, box[1] + vy * frames, box[2] + vx * frames, box[3] + vy * frames];
    });
    return { frames, boxes };
  }
}
