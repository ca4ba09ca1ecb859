// A minimal gRPC-web client for the end-to-end tests: calls the server directly from Node, the
// way the browser app does, for what the UI cannot do (such as a message with a subject, or
// content no real client would send). Encodes only what these calls need: messages whose
// fields are all strings, and string fields read back from a reply.

/** Encodes `{ fieldNumber: string }` as a protobuf message of length-delimited fields. */
export function encodeStrings(fields) {
  const parts = [];
  for (const [number, value] of Object.entries(fields)) {
    const bytes = Buffer.from(value, 'utf8');
    parts.push(varint((Number(number) << 3) | 2), varint(bytes.length), bytes);
  }
  return Buffer.concat(parts);
}

/** The string fields of a protobuf message (other wire types are skipped). */
export function decodeStrings(message) {
  const fields = {};
  let at = 0;
  const readVarint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = message[at++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (at < message.length) {
    const key = readVarint();
    const [number, type] = [key >>> 3, key & 7];
    if (type === 0) readVarint();
    else if (type === 1) at += 8;
    else if (type === 5) at += 4;
    else if (type === 2) {
      const length = readVarint();
      fields[number] = message.subarray(at, at + length).toString('utf8');
      at += length;
    } else throw new Error(`unexpected protobuf wire type ${type}`);
  }
  return fields;
}

function varint(value) {
  const bytes = [];
  while (value >= 0x80) {
    bytes.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  bytes.push(value);
  return Buffer.from(bytes);
}

/** `message` as one gRPC frame: a flags byte (0: a message, uncompressed), its length, itself. */
export function frame(message) {
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  return framed;
}

/**
 * A gRPC-web reply's status and message: `body` holds its frames (a message, then the
 * trailers in a frame flagged 0x80), `header(name)` reads its HTTP headers, where a server
 * that fails at once puts the status instead.
 */
export function readGrpcWebReply(body, header) {
  let reply = null;
  let trailers = '';
  for (let at = 0; at + 5 <= body.length; ) {
    const flags = body[at];
    const length = body.readUInt32BE(at + 1);
    const payload = body.subarray(at + 5, at + 5 + length);
    if (flags & 0x80) trailers += payload.toString('utf8');
    else reply = payload;
    at += 5 + length;
  }
  const status = header('grpc-status') ?? /grpc-status:\s*(\d+)/i.exec(trailers)?.[1];
  const text = header('grpc-message') ?? /grpc-message:\s*(.*)/i.exec(trailers)?.[1] ?? '';
  return { status, message: decodeURIComponent(text.trim()), reply: reply ?? Buffer.alloc(0) };
}

/** The headers of a gRPC-web call from Node, with the caller's token if any. */
export function grpcWebHeaders(token) {
  const headers = { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' };
  if (token) headers.authorization = `Bearer ${token}`;
  return headers;
}

/**
 * Calls a unary RPC over gRPC-web (HTTP/1.1) and returns the reply's message bytes; throws
 * with the grpc-status and grpc-message when the call fails.
 */
export async function unary(baseUrl, path, message, { token } = {}) {
  const response = await fetch(new URL(path, baseUrl), {
    method: 'POST',
    headers: grpcWebHeaders(token),
    body: frame(message),
    signal: AbortSignal.timeout(5_000),
  });
  const body = Buffer.from(await response.arrayBuffer());
  const { status, message: text, reply } = readGrpcWebReply(body, (name) => response.headers.get(name));
  if (status !== '0') throw new Error(`${path} failed: grpc-status ${status}: ${text}`);
  return reply;
}
