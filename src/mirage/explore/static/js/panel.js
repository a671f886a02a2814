// The panel: messages, per-chunk statistics, downloads and uploads.

const $ = (id) => document.getElementById(id);

export function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
  clearTimeout(showMessage.timer);
  showMessage.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 15000 : 8000);
}

const ms = (s) => `${(1000 * s).toFixed(0)}`;

export function showStats(chunk) {
  const t = chunk.timing, s = chunk.stats;
  $("s-chunk").textContent = `${chunk.chunk_index + 1}${chunk.seed !== null ? ` (seed ${chunk.seed})` : ""}`;
  $("s-frames").textContent = `${chunk.total_frames} (+${chunk.frames})`;
  $("s-time").textContent = `${ms(t.total)} ms generation, ${ms(t.wall)} ms step`;
  $("s-split").textContent = [t.read, t.denoise, t.decode, t.depth, t.update].map(ms).join(" / ") + " ms";
  $("s-memory").textContent = `${s.points} points, ${(s.bytes / 1024).toFixed(1)} KiB`;
  $("s-coverage").textContent = `${(100 * s.coverage).toFixed(0)}%`;
  $("coverage").textContent = `coverage ${(100 * s.coverage).toFixed(0)}%`;
  $("s-refs").textContent = s.references.length
    ? s.references.map((r) => `frame ${r.frame_id} (IoU ${r.iou})`).join(", ") : "none";
}

export function clearStats() {
  for (const id of ["s-chunk", "s-time", "s-split", "s-memory", "s-coverage", "s-refs", "s-latency"]) $(id).textContent = "–";
  $("coverage").textContent = "coverage –";
}

async function detail(response) {
  try { return (await response.json()).detail || response.statusText; } catch { return response.statusText; }
}

export async function download(url, filename) {
  const response = await fetch(url);
  if (!response.ok) return showMessage(await detail(response), "error");
  const blob = await response.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

export async function upload(url, files, done) {
  const form = new FormData();
  for (const [name, file] of Object.entries(files)) form.append(name, file, file.name);
  const response = await fetch(url, { method: "POST", body: form });
  if (!response.ok) {
    showMessage(await detail(response), "error");
    return false;
  }
  showMessage(done, "notice");
  return true;
}
