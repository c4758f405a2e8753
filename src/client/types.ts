// Result types shared by the client's modules.

import type { Receipt } from "../core/receipt.js";

/** One attempt of a call. */
export interface Attempt {
  endpoint: string;
  /** HTTP status when an answer came. */
  status?: number;
  /** Error code: the answer's `code`, or the network's errno (ECONNREFUSED, UND_ERR_SOCKET, TIMEOUT, ...). */
  error?: string;
  /** Duration of the attempt. */
  ms: number;
}

export interface WriteResult {
  receipt: Receipt;
  idempotencyKey: string;
  /** The endpoint that answered. */
  endpoint: string;
  /** Every attempt, the successful one last. */
  attempts: Attempt[];
}
