// The WebSocket to the server: JSON text messages, and binary ones made of
// uint32 (little-endian) header length | JSON header | payload (mirage/explore/wire.py).

export function connect(onMessage, onClose) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (event) => onMessage(parse(event.data));
  ws.onclose = (event) => onClose(event);
  return {
    send: (message) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(message)),
    sendRaw: (data) => ws.readyState === WebSocket.OPEN && ws.send(data),
    get open() { return ws.readyState === WebSocket.OPEN; },
  };
}

function parse(data) {
  if (typeof data === "string") return JSON.parse(data);
  const length = new DataView(data).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, length)));
  header.payload = data.slice(4 + length); // a copy, aligned for typed arrays
  return header;
}
