/**
 * `SwitchboardError`: every refusal from the server carries the protocol's code, by name
 * and number; failures of the connection itself are `CLOSED` or `TIMEOUT`.
 *
 * @module
 */

/** Error numbers by name (PROTOCOL §8). */
export const ErrorCode = Object.freeze({
  NORMAL: 0,
  BAD_PREFACE: 1,
  UNSUPPORTED_VERSION: 2,
  BAD_FRAME: 3,
  BAD_MAC: 4,
  UNKNOWN_FRAME_TYPE: 5,
  FRAME_TOO_LARGE: 6,
  SESSION_REQUIRED: 7,
  AUTH_FAILED: 8,
  HEARTBEAT_TIMEOUT: 9,
  SLOW_CONSUMER: 10,
  SHUTTING_DOWN: 11,
  FRAME_TIMEOUT: 12,
  SERVER_BUSY: 13,
  INVALID_ARGUMENT: 100,
  NOT_FOUND: 101,
  ALREADY_EXISTS: 102,
  TOO_LARGE: 103,
  TOO_MANY_CHARACTERS: 104,
  TOO_MANY_RECEIVERS: 105,
  FORBIDDEN: 106,
  CHANNEL_REQUIRED: 107,
  REJECTED: 108,
  LIMIT_REACHED: 109,
  STREAM_ABORTED: 110,
  RATE_LIMITED: 111,
  STORAGE_FULL: 120,
  STORAGE_UNAVAILABLE: 121,
  BACKPLANE_UNAVAILABLE: 122,
  BODY_UNAVAILABLE: 123,
  INTERNAL: 500,
});

const NAMES = new Map(Object.entries(ErrorCode).map(([name, number]) => [number, name]));

/** The name of an error number; codes this client does not know are `CODE_<n>`. */
export function errorName(number) {
  return NAMES.get(number) ?? `CODE_${number}`;
}

export class SwitchboardError extends Error {
  /**
   * @param {string} code the protocol's name ('FORBIDDEN'), or 'CLOSED' / 'TIMEOUT'
   * @param {number} number the protocol's number (0 for CLOSED and TIMEOUT)
   * @param {string} message
   */
  constructor(code, number, message) {
    super(message || code);
    this.name = 'SwitchboardError';
    this.code = code;
    this.number = number;
  }

  /** The error an ERROR, DISCONNECT or STREAM_ABORT packet carries. */
  static fromPacket(packet) {
    const number = packet.code ?? 0;
    return new SwitchboardError(errorName(number), number, packet.message || errorName(number));
  }

  static closed(message = 'the session is closed') {
    return new SwitchboardError('CLOSED', 0, message);
  }

  static timeout(message) {
    return new SwitchboardError('TIMEOUT', 0, message);
  }
}
