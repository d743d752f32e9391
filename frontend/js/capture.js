/** Frames for the server: the current picture, downscaled and JPEG-encoded. */

export class FrameCapture {
  /**
   * @param {number} maxWidth  frames fit this box, aspect kept
   * @param {number} maxHeight
   * @param {number} quality  JPEG quality, 0..1
   */
  constructor(maxWidth, maxHeight, quality) {
    this.maxWidth = maxWidth;
    this.maxHeight = maxHeight;
    this.quality = quality;
    this.canvas = document.createElement("canvas");
    this.context = this.canvas.getContext("2d");
  }

  /**
   * Encode the source's current picture.
   * @param {import("./source.js").PictureSource} source
   * @returns {Promise<ArrayBuffer>}
   */
  async encode(source) {
    const scale = Math.min(1, this.maxWidth / source.width, this.maxHeight / source.height);
    const width = Math.max(1, Math.round(source.width * scale));
    const height = Math.max(1, Math.round(source.height * scale));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.context.drawImage(source.element, 0, 0, width, height);
    const blob = await new Promise((resolve) => this.canvas.toBlob(resolve, "image/jpeg", this.quality));
    if (!blob) throw new Error("the browser could not encode the frame as JPEG");
    return blob.arrayBuffer();
  }
}
