// Reading HTTP request bodies with limits, shared by the public API (server/)
// and the node-to-node transport (cluster/). Bodies are read as events (not
// `for await`, which destroys the socket when we stop early and would keep us
// from answering 413). Compressed bodies are inflated as they arrive and cut
// off as soon as the inflated size passes the limit, so a zip bomb costs at
// most the limit in memory.

import type { IncomingMessage } from "node:http";
import { createGunzip, createInflate, createInflateRaw, type Gunzip, type Inflate, type InflateRaw } from "node:zlib";
import { BadInputError, TooLargeError } from "../core/errors.js";

type Decompressor = Gunzip | Inflate | InflateRaw;

function decompressorFor(encoding: string, first: Buffer | undefined): Decompressor | null {
  switch (encoding) {
    case "":
    case "identity":
      return null;
    case "gzip":
    case "x-gzip":
      return createGunzip();
    case "deflate": {
      // RFC 9110 "deflate" is the zlib format; some clients send raw deflate.
      const zlibHeader = first !== undefined && first.length >= 2 && (first[0]! & 0x0f) === 8 && ((first[0]! << 8) | first[1]!) % 31 === 0;
      return zlibHeader || first === undefined ? createInflate() : createInflateRaw();
    }
    default:
      throw new BadInputError(`unsupported Content-Encoding "${encoding.slice(0, 40)}" (want gzip, deflate or identity)`, { field: "Content-Encoding" });
  }
}

/**
 * Reads the whole body, inflating gzip/deflate, refusing past `limit` bytes
 * (raw or inflated) with a TooLargeError. When refused, the rest of the body
 * is left for Node to discard after the answer is sent.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const encoding = String(req.headers["content-encoding"] ?? "").trim().toLowerCase();
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit)
    return Promise.reject(new TooLargeError(`request body of ${declared} bytes`, limit, { field: "Content-Length" }));
  // Validate the encoding before reading anything.
  try {
    decompressorFor(encoding, undefined)?.destroy();
  } catch (e) {
    return Promise.reject(e);
  }

  return new Promise<Buffer>((resolve, reject) => {
    const out: Buffer[] = [];
    let rawBytes = 0;
    let outBytes = 0;
    let z: Decompressor | null = null;
    let done = false;

    const finish = (err: Error | null): void => {
      if (done) return;
      done = true;
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      if (z !== null) {
        z.removeAllListeners("data");
        z.removeAllListeners("end");
        z.on("error", () => undefined);
        if (err !== null) z.destroy();
      }
      if (err !== null) {
        req.resume(); // discard the rest; Node answers once we write the response
        reject(err);
      } else resolve(Buffer.concat(out, outBytes));
    };

    const tooLarge = (): void =>
      finish(new TooLargeError(z === null ? "request body" : "request body after decompression", limit, { field: "body" }));

    const onOut = (chunk: Buffer): void => {
      outBytes += chunk.length;
      if (outBytes > limit) return tooLarge();
      out.push(chunk);
    };

    const onData = (chunk: Buffer): void => {
      rawBytes += chunk.length;
      if (rawBytes > limit) return tooLarge();
      if (z === null && encoding !== "" && encoding !== "identity") {
        z = decompressorFor(encoding, chunk)!;
        z.on("data", (c: Buffer) => {
          if (!done) onOut(c);
        });
        z.on("end", () => finish(null));
        z.on("error", (e) => finish(new BadInputError(`cannot decompress the ${encoding} body: ${e.message}`, { field: "body" })));
      }
      if (z !== null) {
        if (!z.write(chunk)) {
          req.pause();
          z.once("drain", () => {
            if (!done) req.resume();
          });
        }
      } else onOut(chunk);
    };
    const onEnd = (): void => {
      if (z !== null) z.end();
      else if (encoding !== "" && encoding !== "identity") finish(new BadInputError(`empty ${encoding} body`, { field: "body" }));
      else finish(null);
    };
    const onError = (e: Error): void => finish(new BadInputError(`cannot read the request body: ${e.message}`, { field: "body" }));
    const onClose = (): void => {
      if (!req.complete) finish(new BadInputError("the client closed the connection before sending the whole body", { field: "body" }));
    };

    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/** readBody, then JSON: a body that is not JSON is a BadInputError (400) naming the body. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const body = await readBody(req, limit);
  try {
    return JSON.parse(body.toString("utf8")) as unknown;
  } catch {
    throw new BadInputError("body is not valid JSON", { field: "body" });
  }
}
