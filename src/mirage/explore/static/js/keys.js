// Keys and mouse drags → moves. A held key keeps walking: a new step is asked for whenever
// fewer than two are in flight and little is left to play, so the walk never stalls and the
// queue never runs far ahead of the keys.

const WALK = 0.15; // metres per step (4 frames)
const RISE = 0.05;
const TURN = 6; // degrees per step
const DRAG_DEG_PER_PX = 0.3;

const KEYS = {
  KeyW: { forward: WALK }, ArrowUp: { forward: WALK },
  KeyS: { forward: -WALK }, ArrowDown: { forward: -WALK },
  KeyA: { right: -WALK }, KeyD: { right: WALK },
  ArrowLeft: { yaw: -TURN }, ArrowRight: { yaw: TURN },
  KeyQ: { up: -RISE }, KeyE: { up: RISE },
};

export class Walker {
  constructor(target, send, canPlayMore) {
    this.send = send; // (move) => void
    this.canPlayMore = canPlayMore; // () => bool: little left to play
    this.target = target;
    this.held = new Set();
    this.inFlight = 0;
    this.dragYaw = 0;
    this.nextId = 1;
    this.pressedAt = new Map(); // move id → time of the key press that caused it
    window.addEventListener("keydown", (e) => this.keydown(e));
    window.addEventListener("keyup", (e) => { this.held.delete(e.code); });
    window.addEventListener("blur", () => this.held.clear());
    let dragging = null;
    target.addEventListener("pointerdown", (e) => { dragging = e.clientX; target.setPointerCapture(e.pointerId); });
    target.addEventListener("pointermove", (e) => {
      if (dragging === null) return;
      this.dragYaw += (e.clientX - dragging) * DRAG_DEG_PER_PX;
      dragging = e.clientX;
      this.pump();
    });
    target.addEventListener("pointerup", () => { dragging = null; this.pump(); });
  }

  keydown(e) {
    if (!(e.code in KEYS) || e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    if (e.repeat) return; // holding is handled by `held`
    this.held.add(e.code);
    this.pump(performance.now(), true);
  }

  // Steps asked for and not yet answered; the view's data-in-flight shows it (the tests wait on it).
  get inFlight() { return this._inFlight; }
  set inFlight(n) { this._inFlight = n; this.target.dataset.inFlight = String(n); }

  // A chunk arrived (or was refused): one fewer in flight.
  done() { this.inFlight = Math.max(0, this.inFlight - 1); this.pump(); }

  pump(pressed = performance.now(), fresh = false) {
    while (this.inFlight < 2 && (fresh || this.canPlayMore())) {
      const move = { type: "move", forward: 0, right: 0, up: 0, yaw: 0 };
      for (const code of this.held) for (const [k, v] of Object.entries(KEYS[code])) move[k] += v;
      if (Math.abs(this.dragYaw) >= 1) {
        const turn = Math.max(-30, Math.min(30, this.dragYaw));
        move.yaw += turn;
        this.dragYaw -= turn;
      }
      if (!move.forward && !move.right && !move.up && !move.yaw) return;
      move.id = this.nextId++;
      this.pressedAt.set(move.id, fresh ? pressed : null);
      this.inFlight += 1;
      this.send(move);
      if (fresh) return; // a tap is one step; holding on asks for more as chunks arrive
    }
  }
}
