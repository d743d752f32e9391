/**
 * Live mode's boxes between results: each tracked box moves on along its track's velocity (px
 * per result update), damped and capped, so overlays lag less without flying off when motion
 * turns. Below `MIN_RESULT_RATE` boxes stay where the last result put them: at such rates the
 * box would be moved on by a velocity that is already old, over a horizon of round trip plus a
 * long result interval in which people turn.
 *
 * The numbers come from a simulation of people turning every second or two (two sinusoids, up
 * to 600 px/s; the tracker's half-smoothed velocity; round trip = result interval): moved on
 * undamped, boxes were worse than unmoved below about 5 results/s (median +37 % at 2/s) and
 * better above; damped by 0.7 and capped at 1.5 updates, the crossover stays between 3 and 5/s
 * and the gain above it is nearly the full one (median 25 -> 15 px at 15/s). The threshold
 * is 6/s, above the crossover and clear of a throttled 5/s whose measured rate wobbles around 5.
 */

/** Results per second below which boxes are not moved on at all. */
export const MIN_RESULT_RATE = 6;
/** Share of the predicted motion applied. */
export const DAMPING = 0.7;
/** Boxes are moved on over at most this long after their frame was captured... */
export const MAX_AHEAD_MS = 250;
/** ...and by at most this share of their own width (x) and height (y). */
export const MAX_SHIFT = 0.25;

export class BoxMotion {
  #yolo = null;
  #capturedAt = 0;
  #intervalMs = null;

  /** @param {number} maxUpdates  move boxes on at most this many result updates ahead */
  constructor(maxUpdates) {
    this.maxUpdates = maxUpdates;
  }

  /**
   * Take a new detection result.
   * @param {object | null} yolo  the result's `yolo` field
   * @param {number} capturedAt  performance.now() when its frame was captured
   */
  update(yolo, capturedAt) {
    if (this.#capturedAt > 0 && capturedAt > this.#capturedAt) {
      const interval = capturedAt - this.#capturedAt;
      this.#intervalMs = this.#intervalMs === null ? interval : 0.8 * this.#intervalMs + 0.2 * interval;
    }
    this.#yolo = yolo;
    this.#capturedAt = capturedAt;
  }

  /** Forget the boxes (stopped, or the stage was switched off). */
  clear() {
    this.#yolo = null;
  }

  /** Results per second, from their frames' capture times (0 until two have come). */
  get rate() {
    return this.#intervalMs ? 1000 / this.#intervalMs : 0;
  }

  /**
   * How many result updates of velocity to apply at `now`: damped, capped, 0 at low rates.
   * @param {number} now  performance.now()
   * @returns {number}
   */
  updatesAhead(now) {
    if (!this.#intervalMs || this.rate < MIN_RESULT_RATE) return 0;
    const aheadMs = Math.min(MAX_AHEAD_MS, Math.max(0, now - this.#capturedAt));
    return DAMPING * Math.min(this.maxUpdates, aheadMs / this.#intervalMs);
  }

  /**
   * The boxes at time `now`, in frame pixels.
   * @param {number} now  performance.now()
   * @returns {{frames: number, boxes: number[][]}} `frames`: the result updates applied
   */
  boxesAt(now) {
    const yolo = this.#yolo;
    if (!yolo) return { frames: 0, boxes: [] };
    const frames = this.updatesAhead(now);
    const boxes = yolo.boxes.map((box, i) => {
      if (yolo.track_ids[i] < 0 || frames === 0) return box;
      const [vx, vy] = yolo.velocities[i];
      const capX = MAX_SHIFT * (box[2] - box[0]);
      const capY = MAX_SHIFT * (box[3] - box[1]);
      const dx = Math.max(-capX, Math.min(capX, vx * frames));
      const dy = Math.max(-capY, Math.min(capY, vy * frames));
      return [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy];
    });
    return { frames, boxes };
  }
}
