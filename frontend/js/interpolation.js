/**
 * A result for a picture taken between two results' frames: boxes and keypoints moved a
 * fraction of the way from the earlier result to the later one (boxes paired by track id, then
 * by class and nearest centre; people by their pose boxes). Only interpolation, never
 * extrapolation: whatever the later result cannot match stays where the earlier one put it.
 */

import { KEYPOINT_MIN_CONF } from "./overlay.js";

/** Two pose boxes are the same person when they overlap at least this much. */
const PERSON_MIN_IOU = 0.3;

/**
 * @param {number} a
 * @param {number} b
 * @param {number} fraction
 */
function lerp(a, b, fraction) {
  return a + (b - a) * fraction;
}

/**
 * @param {number[]} a  [x1, y1, x2, y2]
 * @param {number[]} b
 * @param {number} fraction
 * @returns {number[]}
 */
function lerpBox(a, b, fraction) {
  return a.map((value, i) => lerp(value, b[i], fraction));
}

/**
 * Intersection over union of two boxes.
 * @param {number[]} a  [x1, y1, x2, y2]
 * @param {number[]} b
 * @returns {number}
 */
export function iou(a, b) {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Pair the people of two pose results by their boxes, best overlap first.
 * @param {number[][]} before  pose boxes
 * @param {number[][]} after
 * @returns {Map<number, number>} index in `before` -> index in `after`
 */
export function matchPeople(before, after) {
  const pairs = [];
  before.forEach((a, i) => after.forEach((b, j) => {
    const overlap = iou(a, b);
    if (overlap >= PERSON_MIN_IOU) pairs.push([overlap, i, j]);
  }));
  pairs.sort((p, q) => q[0] - p[0]);
  const matched = new Map();
  const taken = new Set();
  for (const [, i, j] of pairs) {
    if (matched.has(i) || taken.has(j)) continue;
    matched.set(i, j);
    taken.add(j);
  }
  return matched;
}

/**
 * A box of the later result is taken for an untracked or re-identified box of the earlier one
 * when it has the same class, is at most this many box sizes away and about the same size:
 * at 2 results/s the tracker loses objects that move more than their own width between
 * results, and their new ids would otherwise freeze the boxes until the next result.
 */
const NEAREST_MAX_SIZES = 3;
const NEAREST_MAX_SIZE_RATIO = 2;

/**
 * @param {number[]} box  [x1, y1, x2, y2]
 * @returns {number[]} [cx, cy, w, h]
 */
function centreSize(box) {
  return [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]];
}

/**
 * Whether `b` can be where `a` went: the distance of their centres in units of `a`'s larger
 * side, or Infinity when they differ too much in size.
 * @param {number[]} a  [x1, y1, x2, y2]
 * @param {number[]} b
 * @returns {number}
 */
function sizesApart(a, b) {
  const [ax, ay, aw, ah] = centreSize(a);
  const [bx, by, bw, bh] = centreSize(b);
  const ratio = Math.max(aw / bw, bw / aw, ah / bh, bh / ah);
  if (!(ratio <= NEAREST_MAX_SIZE_RATIO)) return Infinity;
  return Math.hypot(bx - ax, by - ay) / Math.max(aw, ah, 1);
}

/**
 * Pair the boxes of two detection results: the same track id first, then what is left by
 * class and nearest centre (within NEAREST_MAX_SIZES box sizes, about the same size).
 * @param {object} before  a `yolo` field
 * @param {object} after
 * @returns {Map<number, number>} index in `before` -> index in `after`
 */
export function matchDetections(before, after) {
  const matched = new Map();
  const taken = new Set();
  const byTrack = new Map();
  after.track_ids.forEach((id, j) => {
    if (id >= 0) byTrack.set(id, j);
  });
  before.track_ids.forEach((id, i) => {
    const j = id >= 0 ? byTrack.get(id) : undefined;
    if (j !== undefined && after.classes[j] === before.classes[i]) {
      matched.set(i, j);
      taken.add(j);
    }
  });
  const pairs = [];
  before.boxes.forEach((a, i) => {
    if (matched.has(i)) return;
    after.boxes.forEach((b, j) => {
      if (taken.has(j) || after.classes[j] !== before.classes[i]) return;
      const apart = sizesApart(a, b);
      if (apart <= NEAREST_MAX_SIZES) pairs.push([apart, i, j]);
    });
  });
  pairs.sort((p, q) => p[0] - q[0]);
  for (const [, i, j] of pairs) {
    if (matched.has(i) || taken.has(j)) continue;
    matched.set(i, j);
    taken.add(j);
  }
  return matched;
}

/**
 * The detections between two results: boxes paired by `matchDetections` moved by `fraction`;
 * the others as the earlier result has them.
 * @param {object} before  a `yolo` field
 * @param {object | null} after
 * @param {number} fraction
 * @returns {object} a `yolo` field
 */
function interpolateDetections(before, after, fraction) {
  if (!after) return before;
  const matched = matchDetections(before, after);
  const boxes = before.boxes.map((box, i) => (matched.has(i) ? lerpBox(box, after.boxes[matched.get(i)], fraction) : box));
  return { ...before, boxes };
}

/**
 * The poses between two results: people matched by their boxes have their boxes and their
 * keypoints (those sure enough in both) moved by `fraction`; the others stay.
 * @param {object} before  a `pose` field
 * @param {object | null} after
 * @param {number} fraction
 * @returns {object} a `pose` field
 */
function interpolatePoses(before, after, fraction) {
  if (!after) return before;
  const matched = matchPeople(before.boxes, after.boxes);
  const boxes = before.boxes.map((box, i) => (matched.has(i) ? lerpBox(box, after.boxes[matched.get(i)], fraction) : box));
  const keypoints = before.keypoints.map((points, i) => {
    if (!matched.has(i)) return points;
    const next = after.keypoints[matched.get(i)];
    return points.map(([x, y, conf], k) => {
      const [nx, ny, nconf] = next[k];
      // a keypoint not drawn in either result has no position worth moving towards
      if (conf < KEYPOINT_MIN_CONF || nconf < KEYPOINT_MIN_CONF) return [x, y, conf];
      return [lerp(x, nx, fraction), lerp(y, ny, fraction), conf];
    });
  });
  return { ...before, boxes, keypoints };
}

/**
 * The result for a picture `fraction` (0..1) of the way from `before`'s frame to `after`'s.
 * Everything but detections and poses (flow, labels, scores) is the earlier result's.
 * @param {object} before  `inference` data
 * @param {object} after  `inference` data of a later frame of the same size
 * @param {number} fraction
 * @returns {object} `inference` data
 */
export function interpolateResult(before, after, fraction) {
  if (fraction <= 0 || before.width !== after.width || before.height !== after.height) return before;
  const f = Math.min(1, fraction);
  return {
    ...before,
    yolo: before.yolo && interpolateDetections(before.yolo, after.yolo, f),
    pose: before.pose && interpolatePoses(before.pose, after.pose, f),
  };
}
