// Frames play as they arrive: the first frame of a chunk goes on screen at once when nothing
// is queued, the rest at the playback rate. Canvases hold the frames at their own size; CSS
// scales them up with nearest-neighbour sampling (crisp pixels).

const FRAME_MS = 1000 / 30;

export class Player {
  constructor(canvases, onShown) {
    this.canvases = canvases; // {view, read, truth}
    this.queue = [];
    this.last = -Infinity;
    this.onShown = onShown;
    this.shown = 0;
    const tick = (now) => { this.tick(now); requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  }

  // chunk: header with payload = frames | reads (optional) | ground truth (optional), RGB uint8
  push(chunk) {
    const { frames: n, height: h, width: w } = chunk;
    const size = h * w * 3;
    const bytes = new Uint8Array(chunk.payload);
    const part = (k) => (i) => bytes.subarray((k * n + i) * size, (k * n + i + 1) * size);
    const view = part(0);
    const read = chunk.has_reads ? part(1) : null;
    const truth = chunk.has_ground_truth ? part(chunk.has_reads ? 2 : 1) : null;
    for (let i = 0; i < n; i++) {
      this.queue.push({ h, w, view: view(i), read: read && read(i), truth: truth && truth(i), chunk, first: i === 0 });
    }
    this.canvases.view.dataset.queued = String(this.queue.length);
    this.tick(performance.now());
  }

  showNow(h, w, view, truth) {
    this.queue.length = 0;
    this.draw({ h, w, view, read: null, truth });
  }

  // A new world has no memory read yet: the panel shows none instead of the old world's.
  clearRead() {
    const c = this.canvases.read;
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
    c.dataset.cleared = "1";
  }

  get pending() { return this.queue.length; }

  tick(now) {
    if (!this.queue.length || now - this.last < FRAME_MS - 1) return;
    this.last = now;
    const frame = this.queue.shift();
    this.draw(frame);
    this.shown += 1;
    this.canvases.view.dataset.queued = String(this.queue.length);
    this.canvases.view.dataset.shown = String(this.shown);
    if (this.onShown) this.onShown(frame, now);
  }

  draw({ h, w, view, read, truth }) {
    paint(this.canvases.view, h, w, view);
    if (read) { paint(this.canvases.read, h, w, read); delete this.canvases.read.dataset.cleared; }
    if (truth) paint(this.canvases.truth, h, w, truth);
  }
}

function paint(canvas, h, w, rgb) {
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  const out = image.data;
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    out[j] = rgb[i]; out[j + 1] = rgb[i + 1]; out[j + 2] = rgb[i + 2]; out[j + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}
