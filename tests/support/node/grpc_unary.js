// A gRPC unary call with Node's own http2 client (no gRPC library): the
// third independent HTTP/2 stack the proxy must answer correctly, beside h2load
// and grpcio. Usage: node grpc_unary.js HOST:PORT PATH HEX_PROTOBUF
// Prints one JSON line: {status, grpcStatus, grpcMessage, message: hex, headers}.
const http2 = require("http2");

const [target, path, requestHex] = process.argv.slice(2);
const body = Buffer.from(requestHex, "hex");
const frame = Buffer.alloc(5 + body.length);
frame.writeUInt8(0, 0);
frame.writeUInt32BE(body.length, 1);
body.copy(frame, 5);

const session = http2.connect(`http://${target}`);
session.on("error", (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); });
const req = session.request({
  ":method": "POST", ":path": path, "content-type": "application/grpc", "te": "trailers",
});
let status = null, headers = {}, chunks = [];
req.on("response", (h) => { status = h[":status"]; headers = h; });
req.on("data", (c) => chunks.push(c));
req.on("trailers", (t) => { Object.assign(headers, t); });
req.on("end", () => {
  const data = Buffer.concat(chunks);
  const message = data.length >= 5 ? data.subarray(5, 5 + data.readUInt32BE(1)) : Buffer.alloc(0);
  console.log(JSON.stringify({
    status, grpcStatus: headers["grpc-status"], grpcMessage: headers["grpc-message"] || "",
    message: message.toString("hex"),
  }));
  session.close();
});
req.end(frame);
setTimeout(() => { console.log(JSON.stringify({ error: "timeout" })); process.exit(2); }, 10000).unref();
