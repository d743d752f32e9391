/**
 * Draws a result over the video: motion arrows, pose skeletons, boxes with labels, scores and
 * track ids, and OCR text, scaled from frame pixels to the canvas.
 */

/** COCO keypoint pairs joined by the skeleton (nose, eyes, ears, shoulders, ..., ankles). */
const COCO_SKELETON = [
  [15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7], [6, 8],
  [7, 9], [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6],
];

const PALETTE = [
  [255, 56, 56], [255, 157, 151], [255, 112, 31], [255, 178, 29], [207, 210, 49], [72, 249, 10],
  [26, 147, 52], [0, 212, 187], [44, 153, 168], [0, 194, 255], [52, 69, 147], [100, 115, 255],
  [0, 24, 236], [132, 56, 255], [82, 0, 133], [203, 56, 255], [255, 149, 200], [255, 55, 199],
];
/** Keypoints less sure than this are not drawn. */
export const KEYPOINT_MIN_CONF = 0.3;
const FLOW_MIN_PX = 0.5;

/**
 * The colour of a class, as [r, g, b].
 * @param {number} classId
 * @returns {number[]}
 */
function classColor(classId) {
  return PALETTE[classId % PALETTE.length];
}

/**
 * Draw one result on `context`'s canvas (the video is already drawn).
 * @param {CanvasRenderingContext2D} context
 * @param {object} scene
 * @param {object} scene.result  the last `inference` data (width, height, yolo, pose, flow)
 * @param {number[][]} scene.boxes  the detection boxes to draw, in frame pixels (extrapolated)
 * @param {Array<{box: number[], text: string}> | null} scene.ocr  OCR text still on show
 * @returns {Array<{box: number[], color: number[], text: string, trackId: number, label: string}>}
 *   the boxes drawn, in canvas pixels: the label's text, the track id (-1: none), the class label
 */
export function drawOverlay(context, { result, boxes, ocr }) {
  const sx = context.canvas.width / result.width;
  const sy = context.canvas.height / result.height;
  const line = Math.max(2, 2 * Math.round(context.canvas.width / 640));
  context.save();
  context.lineWidth = line;
  context.font = `${6 * line + 2}px system-ui, sans-serif`;
  context.textBaseline = "top";
  if (result.flow) drawFlow(context, result.flow, sx, sy);
  if (result.pose) drawPoses(context, result.pose, sx, sy, line);
  const drawn = result.yolo ? drawBoxes(context, result.yolo, boxes, sx, sy) : [];
  if (ocr) drawOcr(context, ocr, sx, sy);
  context.restore();
  return drawn;
}

function drawBoxes(context, yolo, boxes, sx, sy) {
  const drawn = boxes.map((box, i) => {
    const [x1, y1, x2, y2] = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy].map(Math.round);
    const color = classColor(yolo.classes[i]);
    const trackId = yolo.track_ids[i];
    const id = trackId >= 0 ? ` #${trackId}` : "";
    const text = `${yolo.labels[i]} ${yolo.scores[i].toFixed(2)}${id}`;
    return { box: [x1, y1, x2, y2], color, text, trackId, label: yolo.labels[i] };
  });
  for (const { box, color } of drawn) {
    context.strokeStyle = `rgb(${color})`;
    context.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  }
  for (const { box, color, text } of drawn) {
    drawLabel(context, text, box[0], box[1], color);
  }
  return drawn;
}

function drawLabel(context, text, x, y, color) {
  const height = parseInt(context.font, 10) + 4;
  const top = Math.max(0, y - height);
  context.fillStyle = `rgb(${color})`;
  context.fillRect(x, top, context.measureText(text).width + 6, height);
  context.fillStyle = "#fff";
  context.fillText(text, x + 3, top + 2);
}

function drawPoses(context, pose, sx, sy, line) {
  context.strokeStyle = "rgb(0, 255, 128)";
  context.fillStyle = "rgb(255, 255, 0)";
  for (const keypoints of pose.keypoints) {
    const visible = keypoints.map(([x, y, conf]) => (conf >= KEYPOINT_MIN_CONF ? [x * sx, y * sy] : null));
    context.beginPath();
    for (const [a, b] of COCO_SKELETON) {
      if (!visible[a] || !visible[b]) continue;
      context.moveTo(...visible[a]);
      context.lineTo(...visible[b]);
    }
    context.stroke();
    for (const point of visible) {
      if (point) context.fillRect(point[0] - line, point[1] - line, 2 * line, 2 * line);
    }
  }
}

/** Flow arrows are drawn at least this far apart on the canvas, and fill at most this share of
 * that spacing: on a dense grid, or with the long vectors of a low result rate, arrows capped at
 * their own cell touched end to end and merged into solid stripes. */
export const FLOW_ARROW_SPACING_PX = 24;
export const FLOW_ARROW_FILL = 0.7;

/**
 * The motion arrows of a flow grid, in canvas pixels: one per `stride` cells so that arrows are
 * at least FLOW_ARROW_SPACING_PX apart, each at most FLOW_ARROW_FILL of that spacing long
 * (longer ones are scaled down, keeping their direction).
 * @param {{fx: number[][], fy: number[][], step: number}} flow
 * @param {number} sx  canvas px per frame px, horizontally
 * @param {number} sy  vertically
 * @returns {number[][]} [x0, y0, x1, y1] per arrow
 */
export function flowArrows(flow, sx, sy) {
  const cell = flow.step * Math.min(sx, sy);
  const stride = Math.max(1, Math.ceil(FLOW_ARROW_SPACING_PX / cell));
  const maxLength = FLOW_ARROW_FILL * stride * cell;
  const arrows = [];
  for (let r = 0; r < flow.fx.length; r += stride) {
    for (let c = 0; c < flow.fx[r].length; c += stride) {
      const dx = flow.fx[r][c] * sx;
      const dy = flow.fy[r][c] * sy;
      const length = Math.hypot(dx, dy);
      if (length < FLOW_MIN_PX) continue;
      const gain = Math.min(1, maxLength / length);
      const x0 = (c + 0.5) * flow.step * sx;
      const y0 = (r + 0.5) * flow.step * sy;
      arrows.push([x0, y0, x0 + dx * gain, y0 + dy * gain]);
    }
  }
  return arrows;
}

function drawFlow(context, flow, sx, sy) {
  context.save();
  context.strokeStyle = "rgba(0, 255, 255, 0.8)";
  context.lineWidth = 1;
  context.beginPath();
  for (const [x0, y0, x1, y1] of flowArrows(flow, sx, sy)) {
    const angle = Math.atan2(y1 - y0, x1 - x0);
    context.moveTo(x0, y0);
    context.lineTo(x1, y1);
    for (const side of [-0.5, 0.5]) {
      context.moveTo(x1, y1);
      context.lineTo(x1 - 4 * Math.cos(angle + side), y1 - 4 * Math.sin(angle + side));
    }
  }
  context.stroke();
  context.restore();
}

function drawOcr(context, ocr, sx, sy) {
  context.strokeStyle = "rgb(255, 255, 255)";
  for (const { box, text } of ocr) {
    context.strokeRect(box[0] * sx, box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy);
    drawLabel(context, text, Math.round(box[0] * sx), Math.round(box[3] * sy) + parseInt(context.font, 10) + 4, [0, 0, 0]);
  }
}
