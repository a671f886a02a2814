// The memory in 3D: its points in their display colours, the camera path and the current
// frustum, drawn with three.js when something changes. World coordinates are OpenCV-like
// (y down); three.js is y up, so a point (x, y, z) is drawn at (x, −y, −z), a proper rotation.

import * as THREE from "three";
import { OrbitControls } from "/static/vendor/three/OrbitControls.js";

const RENDER_MS = 250;
const toThree = (x, y, z) => new THREE.Vector3(x, -y, -z);

export class MemoryView {
  constructor(element) {
    this.element = element;
    this.count = 0;
    try {
      this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    } catch (err) {
      element.innerHTML = "<p>The 3D view needs WebGL, which this browser does not offer.</p>";
      this.renderer = null;
      return;
    }
    this.renderer.setPixelRatio(window.devicePixelRatio || 1);
    element.appendChild(this.renderer.domElement);
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0x0b0c0f);
    this.camera = new THREE.PerspectiveCamera(55, 1, 0.05, 200);
    this.camera.position.set(0, 6, 6);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.addEventListener("change", () => this.renderer.render(this.scene, this.camera));
    this.scene.add(new THREE.GridHelper(20, 20, 0x333a44, 0x22272e));

    this.points = new THREE.Points(new THREE.BufferGeometry(),
      new THREE.PointsMaterial({ size: 0.06, vertexColors: true, sizeAttenuation: true }));
    this.path = new THREE.Line(new THREE.BufferGeometry(), new THREE.LineBasicMaterial({ color: 0x7cc4ff }));
    this.frustum = new THREE.LineSegments(new THREE.BufferGeometry(), new THREE.LineBasicMaterial({ color: 0xffd166 }));
    this.scene.add(this.points, this.path, this.frustum);
    this.framed = false;
    new ResizeObserver(() => this.resize()).observe(element);
    this.resize();
  }

  resize() {
    if (!this.renderer) return;
    const { clientWidth: w, clientHeight: h } = this.element;
    if (!w || !h) return;
    this.renderer.setSize(w, h);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.renderer.render(this.scene, this.camera); // setSize cleared the canvas: draw now
  }

  // header: {count, total}; payload: float32 xyz × count, then uint8 rgb × count
  setPoints(header) {
    this.count = header.total;
    this.element.dataset.points = String(header.total);
    if (!this.renderer) return;
    const n = header.count;
    const xyz = new Float32Array(header.payload, 0, 3 * n);
    const rgb = new Uint8Array(header.payload, 12 * n, 3 * n);
    const position = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      position[3 * i] = xyz[3 * i]; position[3 * i + 1] = -xyz[3 * i + 1]; position[3 * i + 2] = -xyz[3 * i + 2];
    }
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(position, 3));
    geometry.setAttribute("color", new THREE.BufferAttribute(rgb, 3, true));
    this.points.geometry.dispose();
    this.points.geometry = geometry;
    this.render();
  }

  // path: [[x, y, z], …] camera centres; pose: the current cam2world, row-major 4×4
  setPath(path, pose, fovXDeg) {
    if (!this.renderer) return;
    this.path.geometry.dispose();
    this.path.geometry = new THREE.BufferGeometry().setFromPoints(path.map(([x, y, z]) => toThree(x, y, z)));
    this.setPose(pose, fovXDeg);
  }

  extendPath(centres, pose, fovXDeg) {
    if (!this.renderer) return;
    const old = this.path.geometry.getAttribute("position");
    const points = [];
    if (old) for (let i = 0; i < old.count; i++) points.push(new THREE.Vector3(old.getX(i), old.getY(i), old.getZ(i)));
    for (const [x, y, z] of centres) points.push(toThree(x, y, z));
    this.path.geometry.dispose();
    this.path.geometry = new THREE.BufferGeometry().setFromPoints(points);
    this.setPose(pose, fovXDeg);
  }

  setPose(m, fovXDeg) {
    this.fov = fovXDeg || this.fov || 60;
    const centre = toThree(m[3], m[7], m[11]);
    const d = 0.5, t = Math.tan((this.fov * Math.PI) / 360) * d;
    // frustum corners in camera axes (x right, y down, z forward), then to the world
    const corner = (u, v) => toThree(
      m[3] + m[0] * u + m[1] * v + m[2] * d,
      m[7] + m[4] * u + m[5] * v + m[6] * d,
      m[11] + m[8] * u + m[9] * v + m[10] * d);
    const c = [corner(-t, -t), corner(t, -t), corner(t, t), corner(-t, t)];
    const lines = [centre, c[0], centre, c[1], centre, c[2], centre, c[3], c[0], c[1], c[1], c[2], c[2], c[3], c[3], c[0]];
    this.frustum.geometry.dispose();
    this.frustum.geometry = new THREE.BufferGeometry().setFromPoints(lines);
    if (!this.framed) { // look down at the start from above and behind it
      this.framed = true;
      this.controls.target.copy(centre);
      this.camera.position.copy(centre).add(new THREE.Vector3(0, 5, 4));
      this.controls.update();
    }
    this.render();
  }

  // Draw at most every RENDER_MS, on the next animation frame: a chunk changes the points, the
  // path and the frustum at once, and while walking the frames matter more than the map.
  render() {
    if (!this.renderer || this.pending) return;
    this.pending = true;
    const wait = Math.max(0, RENDER_MS - (performance.now() - (this.drawnAt || -Infinity)));
    setTimeout(() => requestAnimationFrame(() => {
      this.pending = false;
      this.drawnAt = performance.now();
      this.renderer.render(this.scene, this.camera);
    }), wait);
  }
}
