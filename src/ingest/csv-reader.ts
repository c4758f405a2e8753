// RFC 4180 record reader: fields separated by commas, records by LF or CRLF,
// a field in double quotes may hold commas, line breaks and "" for a quote.
// Strict where the RFC is (a quote inside an unquoted field, text after a
// closing quote), because guessing what a malformed row meant would store
// values nobody wrote.

import { BadInputError } from "../core/errors.js";

const QUOTE = 34;
const COMMA = 44;
const LF = 10;
const CR = 13;

export class CsvReader {
  private pos = 0;
  /** Physical line (1-based) at the reader's position. */
  private line = 1;
  /** Line on which the record last returned starts. */
  recordLine = 0;

  constructor(private readonly text: string) {}

  /** The next record's fields, or null at the end of the text. */
  next(): string[] | null {
    const text = this.text;
    if (this.pos >= text.length) return null;
    this.recordLine = this.line;
    const fields: string[] = [];
    for (;;) {
      const column = fields.length + 1;
      fields.push(text.charCodeAt(this.pos) === QUOTE ? this.quoted(column) : this.unquoted(column));
      if (this.pos >= text.length) return fields;
      const c = text.charCodeAt(this.pos++);
      if (c === LF) {
        this.line++;
        return fields;
      }
      // Otherwise a comma: another field follows, possibly empty.
      if (this.pos >= text.length) {
        fields.push("");
        return fields;
      }
    }
  }

  private unquoted(column: number): string {
    const text = this.text;
    const start = this.pos;
    let i = start;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === COMMA || c === LF) break;
      if (c === QUOTE) throw new BadInputError('a double quote inside an unquoted field (quote the whole field and write "" for a quote)', { line: this.line, column });
      i++;
    }
    this.pos = i;
    const end = i > start && text.charCodeAt(i - 1) === CR && (i === text.length || text.charCodeAt(i) === LF) ? i - 1 : i;
    return text.slice(start, end);
  }

  private quoted(column: number): string {
    const text = this.text;
    const startLine = this.line;
    let value = "";
    let from = this.pos + 1;
    for (;;) {
      const q = text.indexOf('"', from);
      if (q < 0) throw new BadInputError("unterminated quoted field", { line: startLine, column });
      this.countLines(from, q);
      value += text.slice(from, q);
      if (text.charCodeAt(q + 1) === QUOTE) {
        value += '"';
        from = q + 2;
        continue;
      }
      this.pos = q + 1;
      break;
    }
    let c = text.charCodeAt(this.pos);
    if (c === CR && text.charCodeAt(this.pos + 1) === LF) {
      this.pos++;
      c = LF;
    }
    if (this.pos < text.length && c !== COMMA && c !== LF)
      throw new BadInputError("unexpected text after a closing quote", { line: this.line, column });
    return value;
  }

  private countLines(from: number, to: number): void {
    // A plain loop: indexOf("\n") could run past `to` to a far newline for every field.
    for (let i = from; i < to; i++) if (this.text.charCodeAt(i) === LF) this.line++;
  }
}
