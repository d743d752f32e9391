/**
 * What a result's per-stage `errors` tell the user (docs/protocol.md, "Per-stage errors"): a
 * stage that cannot reach Triton means detection and pose are down (red), any other stage error
 * means the page runs degraded (amber).
 */

import { ErrorCode } from "./error_codes.js";

/** The stages as the page's toggles name them. */
const STAGE_WORDS = { yolo: "detection", pose: "pose", motion: "motion", ocr: "OCR" };

/**
 * The code at the head of a stage's error text (`"code: message"`).
 * @param {string} text
 * @returns {string}
 */
export function stageErrorCode(text) {
  return String(text).split(":", 1)[0].trim();
}

/**
 * The status a result's `errors` call for.
 * @param {Record<string, string> | null | undefined} errors  the result's `errors`
 * @returns {{state: "triton-down" | "degraded", detail: string, text: string} | null}  null
 *   when the result is clean; `text` lists every stage's error as received
 */
export function stageErrorStatus(errors) {
  const entries = Object.entries(errors ?? {});
  if (!entries.length) return null;
  const text = entries.map(([stage, error]) => `${stage}: ${error}`).join("; ");
  const unreachable = entries
    .filter(([, error]) => stageErrorCode(error) === ErrorCode.TRITON_UNAVAILABLE)
    .map(([stage]) => STAGE_WORDS[stage] ?? stage);
  if (!unreachable.length) return { state: "degraded", detail: `stage errors: ${text}`, text };
  const detail =
    `Triton is unreachable: no ${unreachable.join(" or ")} results. The server retries on every ` +
    "frame and recovers by itself once Triton runs again; check that the Triton server is running " +
    "(its log says why it stopped) or restart it";
  return { state: "triton-down", detail, text };
}
