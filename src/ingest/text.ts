// Request bodies arrive as bytes; every text format decodes them once and
// walks lines. Decoding is strict because a lenient decoder would turn bad
// bytes into U+FFFD and store a series nobody wrote.

import { BadInputError, TooLargeError } from "../core/errors.js";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes the whole body; on invalid UTF-8 names the first bad line. */
export function decodeBody(body: Uint8Array): string {
  try {
    return strictUtf8.decode(body);
  } catch {
    throw new BadInputError("invalid UTF-8", { line: firstInvalidUtf8Line(body) });
  }
}

// Only runs on the failure path, so decoding line by line costs nothing normally.
function firstInvalidUtf8Line(body: Uint8Array): number {
  let start = 0;
  let line = 1;
  while (start <= body.length) {
    let end = body.indexOf(10, start);
    if (end < 0) end = body.length;
    try {
      strictUtf8.decode(body.subarray(start, end));
    } catch {
      return line;
    }
    start = end + 1;
    line++;
  }
  return line - 1;
}

/** UTF-8 byte length of a string, computed only when its UTF-16 length leaves doubt. */
export function exceedsBytes(s: string, bytesMax: number): boolean {
  if (s.length > bytesMax) return true; // every UTF-16 unit takes at least one byte
  if (s.length * 3 <= bytesMax) return false; // and at most three
  return Buffer.byteLength(s, "utf8") > bytesMax;
}

/**
 * Iterates the lines of a decoded body (LF or CRLF), 1-based numbering,
 * refusing any line longer than lineBytesMax.
 */
export class LineReader {
  private pos = 0;
  /** 1-based number of the line last returned. */
  lineNo = 0;

  constructor(
    private readonly text: string,
    private readonly lineBytesMax: number,
  ) {}

  next(): string | null {
    const text = this.text;
    if (this.pos > text.length || (this.pos === text.length && this.lineNo > 0)) return null;
    let end = text.indexOf("\n", this.pos);
    if (end < 0) end = text.length;
    let line = text.slice(this.pos, end);
    this.pos = end + 1;
    this.lineNo++;
    if (exceedsBytes(line, this.lineBytesMax)) throw new TooLargeError("line length in bytes", this.lineBytesMax, { line: this.lineNo });
    if (line.length > 0 && line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
    return line;
  }
}

/** True for a line holding only spaces and tabs. */
export function isBlank(line: string): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c !== 32 && c !== 9) return false;
  }
  return true;
}

/** Keeps error messages short when they quote user input. */
export function quote(s: string, charsMax = 40): string {
  return JSON.stringify(s.length > charsMax ? `${s.slice(0, charsMax)}…` : s);
}

/**
 * Checks every physical line against lineBytesMax before a format whose
 * records may span lines (quoted CSV) starts, so an oversized line is always
 * reported as such, whatever else is wrong with it.
 */
export function checkLineLengths(text: string, lineBytesMax: number): void {
  let start = 0;
  let lineNo = 1;
  while (start <= text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    const length = end - start;
    if (length > lineBytesMax || (length * 3 > lineBytesMax && exceedsBytes(text.slice(start, end), lineBytesMax)))
      throw new TooLargeError("line length in bytes", lineBytesMax, { line: lineNo });
    start = end + 1;
    lineNo++;
  }
}
