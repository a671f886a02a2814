// The explorer page: one socket, a player for the frames, a walker for the keys, the 3D memory
// view, the stats panel and the actions. State shown to tests lives in the page's text.

import { connect } from "./socket.js";
import { Player } from "./player.js";
import { Walker } from "./keys.js";
import { MemoryView } from "./memory3d.js";
import { showMessage, showStats, clearStats, download, upload } from "./panel.js";

const $ = (id) => document.getElementById(id);
const state = { session: null, hello: null, fov: 60, latencies: [], shownAt: [], stepMs: [], chunks: 0 };
window.explore = state; // for benchmarks: latencies and server step times (ms), frame display times

const memory = new MemoryView($("memory3d"));
const player = new Player({ view: $("view"), read: $("read"), truth: $("truth") }, (frame, now) => {
  state.shownAt.push(now);
  if (walker.held.size || walker.dragYaw) walker.pump(); // room in the queue: keep a held key walking
  if (!frame.first) return;
  const pressed = walker.pressedAt.get(frame.chunk.move_id);
  walker.pressedAt.delete(frame.chunk.move_id);
  if (pressed) {
    const ms = now - pressed;
    state.latencies.push(ms);
    $("s-latency").textContent = `${ms.toFixed(0)} ms`;
  }
});
const socket = connect(onMessage, (event) => {
  $("status").textContent = event.code === 1013 ? "server full" : "disconnected: reload the page to start again";
});
const walker = new Walker($("view"), (move) => socket.send(move), () => player.pending <= 4);

function onMessage(m) {
  switch (m.type) {
    case "hello":
      state.session = m.session; state.hello = m;
      showWorld(m.source, m.has_ground_truth);
      $("view").focus();
      break;
    case "state":
      if (m.reason === "start" || m.reason === "load") { // another world: nothing of the old one stays
        showWorld(m.source, m.has_ground_truth);
        player.clearRead();
        clearStats();
      }
      state.fov = m.fov_x_deg;
      memory.setPath(m.path, m.pose, m.fov_x_deg);
      $("s-frames").textContent = `${m.frames} (${m.chunks} chunks)`;
      break;
    case "view": {
      const size = m.height * m.width * 3;
      const bytes = new Uint8Array(m.payload);
      player.showNow(m.height, m.width, bytes.subarray(0, size), m.has_ground_truth ? bytes.subarray(size, 2 * size) : null);
      break;
    }
    case "chunk":
      state.chunks += 1;
      state.stepMs.push(1000 * m.timing.wall);
      player.push(m);
      memory.extendPath(m.cameras.map((c) => [c[3], c[7], c[11]]), m.cameras[m.cameras.length - 1], state.fov);
      showStats(m);
      $("progress").hidden = true;
      walker.done();
      break;
    case "points":
      memory.setPoints(m);
      $("points").textContent = `${m.total} points`;
      break;
    case "progress":
      $("progress").hidden = false;
      $("progress").max = m.steps; $("progress").value = m.step;
      break;
    case "busy":
      walker.done();
      break;
    case "error":
      showMessage(m.message, "error");
      walker.inFlight = 0;
      break;
    case "notice":
      showMessage(m.message, "notice");
      break;
    case "full":
      showMessage(m.message, "error");
      $("status").textContent = "server full";
      break;
  }
}

function showWorld(source, hasTruth) {
  const h = state.hello;
  const what = source.scene !== undefined ? `scene ${source.family} ${source.scene}`
    : source.image !== undefined ? `image ${source.image}` : `world ${source.world}`;
  const input = h.memory_mode === "none" ? "" : ` (${h.memory_input})`;
  $("status").textContent = `${h.backbone} · ${h.memory_mode} memory${input} · ${h.height}×${h.width} · ${what}`;
  $("truth-toggle").hidden = !hasTruth;
  if (!hasTruth && $("show-truth").checked) {
    $("show-truth").checked = false;
    $("truth-figure").hidden = true;
  }
}

const api = (path) => `/api/sessions/${state.session}/${path}`;
$("undo").onclick = () => socket.send({ type: "undo" });
$("reroll").onclick = () => socket.send({ type: "reroll" });
$("save").onclick = () => download(api("world"), "world.mirage-world");
$("export-ply").onclick = () => download(api("points.ply"), "memory.ply");
$("export-path").onclick = () => download(api("path.json"), "path.json");
$("load").onchange = async (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (file) await upload(api("world"), { world: file }, "Loaded the world");
};
$("start-form").onsubmit = async (e) => {
  e.preventDefault();
  const image = $("start-image").files[0];
  if (!image) return showMessage("choose an image first", "error");
  const files = { image };
  if ($("start-depth").files[0]) files.depth = $("start-depth").files[0];
  await upload(api("start"), files, "Started from the image"); // the state message shows the new world
};
$("show-truth").onchange = (e) => {
  $("truth-figure").hidden = !e.target.checked;
  socket.send({ type: "options", ground_truth: e.target.checked });
};
setInterval(() => socket.send({ type: "ping" }), 60000);
