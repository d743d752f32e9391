/**
 * Recent results in the order of their frames' capture times, and the overlays for a picture
 * taken at any time: that frame's own result, or the two results bracketing it interpolated,
 * or (the later one not there yet) the earlier one unmoved.
 */

import { interpolateResult } from "./interpolation.js";

/** Results whose frames are this much older than the newest result's are dropped. */
const KEEP_MS = 4000;

/**
 * @typedef {object} Scene
 * @property {object} result  what to draw: `inference` data, interpolated where needed
 * @property {object} held  the newest result whose frame is at or before the picture, unmoved
 * @property {number} heldAt  capture time of `held`'s frame
 * @property {number | null} nextAt  capture time of the next result's frame (null: not there yet)
 */

export class ResultTimeline {
  /** @type {Array<{capturedAt: number, result: object}>} oldest first */
  #entries = [];

  /**
   * Take a result; one for a frame already there replaces it.
   * @param {number} capturedAt  capture time of its frame
   * @param {object} result  `inference` data
   */
  add(capturedAt, result) {
    const entries = this.#entries;
    let i = entries.length;
    while (i > 0 && entries[i - 1].capturedAt > capturedAt) i--;
    if (i > 0 && entries[i - 1].capturedAt === capturedAt) entries[i - 1].result = result;
    else entries.splice(i, 0, { capturedAt, result });
    const newest = entries.at(-1).capturedAt;
    while (entries.length > 2 && entries[0].capturedAt < newest - KEEP_MS) entries.shift();
  }

  /**
   * The overlays for a picture captured at `time`.
   * @param {number} time
   * @returns {Scene | null} null: no result is at or before it
   */
  sceneAt(time) {
    const entries = this.#entries;
    let i = entries.length - 1;
    while (i >= 0 && entries[i].capturedAt > time) i--;
    if (i < 0) return null;
    const before = entries[i];
    const after = entries[i + 1] ?? null;
    const scene = { held: before.result, heldAt: before.capturedAt, nextAt: after?.capturedAt ?? null };
    if (!after || before.capturedAt === time) return { ...scene, result: before.result };
    const fraction = (time - before.capturedAt) / (after.capturedAt - before.capturedAt);
    return { ...scene, result: interpolateResult(before.result, after.result, fraction) };
  }

  /** Results held. */
  get size() {
    return this.#entries.length;
  }

  /** Forget every result (stopped, reconnected, another source). */
  clear() {
    this.#entries = [];
  }
}
