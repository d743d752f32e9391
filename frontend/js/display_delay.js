/**
 * How far behind the camera the synchronised mode shows the video. A picture can have its
 * overlays once the result of the next frame sent after it (the one that brackets it) has
 * arrived; for the pictures just after a sent frame that is the NEXT result's arrival minus the
 * earlier frame's capture: round trip plus result interval. The need is measured on every
 * result and smoothed as TCP smooths round trips (RFC 6298: mean plus a multiple of the mean
 * deviation) plus a margin; the delay shown slews towards it, so the video slows down or
 * speeds up a little instead of jumping.
 */

import { HISTORY_MAX_AGE_MS } from "./frame_history.js";

/** Added to the estimate: a rendered frame (16 ms) plus scheduling slack. */
export const DELAY_MARGIN_MS = 30;
/** Never more than the frame history holds (less a few frames). */
export const DELAY_MAX_MS = HISTORY_MAX_AGE_MS - 100;
/** The delay grows by at most this many ms per ms (the video plays at half speed meanwhile). */
export const DELAY_GROW_RATE = 0.5;
/** And shrinks by at most this many (the video plays at 1.25x speed meanwhile). */
export const DELAY_SHRINK_RATE = 0.25;
/** Weights of a new sample in the smoothed need and in its mean deviation (RFC 6298). */
const MEAN_GAIN = 1 / 8;
const DEVIATION_GAIN = 1 / 4;
/** Deviations added to the smoothed need, so that slower answers are covered too. */
const DEVIATIONS = 2;

export class DisplayDelay {
  #lastCapturedAt = null;
  #mean = null;
  #deviation = 0;
  #delayMs = 0;
  #shownAt = null;

  /**
   * A result arrived: measure the need it shows.
   * @param {number} capturedAt  capture time of its frame
   * @param {number} arrivedAt  performance.now() at its arrival
   */
  resultArrived(capturedAt, arrivedAt) {
    const previous = this.#lastCapturedAt;
    if (previous !== null && capturedAt <= previous) return;
    this.#lastCapturedAt = capturedAt;
    if (previous === null) return;
    const need = arrivedAt - previous;
    if (this.#mean === null) {
      this.#mean = need;
      this.#deviation = need / 2;
    } else {
      this.#deviation += DEVIATION_GAIN * (Math.abs(need - this.#mean) - this.#deviation);
      this.#mean += MEAN_GAIN * (need - this.#mean);
    }
  }

  /** The delay the display moves towards: 0 until two results have been measured. */
  get targetMs() {
    if (this.#mean === null) return 0;
    return Math.min(DELAY_MAX_MS, this.#mean + DEVIATIONS * this.#deviation + DELAY_MARGIN_MS);
  }

  /** The delay shown at the last `at` call. */
  get delayMs() {
    return this.#delayMs;
  }

  /**
   * The delay to show at `now`: moved towards the target at a bounded rate, so the display
   * time (`now` minus it) never runs backwards.
   * @param {number} now  performance.now() of the rendered frame
   * @returns {number}
   */
  at(now) {
    const elapsed = this.#shownAt === null ? 0 : Math.max(0, now - this.#shownAt);
    this.#shownAt = now;
    const step = this.targetMs - this.#delayMs;
    this.#delayMs += Math.max(-DELAY_SHRINK_RATE * elapsed, Math.min(DELAY_GROW_RATE * elapsed, step));
    return this.#delayMs;
  }

  /** Start over at no delay (stopped, reconnected, another source or mode). */
  clear() {
    this.#lastCapturedAt = null;
    this.#mean = null;
    this.#deviation = 0;
    this.#delayMs = 0;
    this.#shownAt = null;
  }
}
