/**
 * What the served models are (the `models` message, docs/protocol.md): a line naming the
 * detection and pose models with their weights and classes, the detector's class names, and a
 * banner when the weights are random (then the boxes and keypoints mean nothing).
 */

/** The manifest's source kinds in words. */
const WEIGHTS_WORDS = {
  official: "official weights",
  pretrained: "pretrained weights",
  user: "your weights",
  random: "random weights",
};

/**
 * @typedef {object} ServedModel
 * @property {string} name  the model's name in Triton
 * @property {{kind: string, detail: string, meaningful: boolean}} source
 * @property {number} classes
 * @property {string[]} class_names
 */

/**
 * One model in words, e.g. "detector yolo: official weights (yolov8n.pt), 80 classes".
 * @param {string} role  "detector" or "pose"
 * @param {ServedModel} model
 * @returns {string}
 */
export function modelText(role, model) {
  const { kind, detail } = model.source;
  const weights = WEIGHTS_WORDS[kind] ?? `${kind} weights`;
  const classes = model.classes === 1 ? "1 class" : `${model.classes} classes`;
  return `${role} ${model.name}: ${weights} (${detail}), ${classes}`;
}

/**
 * Show the models: `#models` (a line), `#class-names` (the detector's classes) and
 * `#model-warning` (a banner, hidden unless the server sent a warning).
 * @param {Document} doc
 * @param {{detection: ServedModel, pose: ServedModel, warning: string | null}} models
 */
export function showModels(doc, models) {
  doc.getElementById("models").textContent =
    `${modelText("detector", models.detection)}; ${modelText("pose", models.pose)}`;
  doc.getElementById("class-names").textContent = models.detection.class_names.join(", ");
  const banner = doc.getElementById("model-warning");
  banner.textContent = models.warning ? `Warning: ${models.warning}` : "";
  banner.hidden = !models.warning;
}
