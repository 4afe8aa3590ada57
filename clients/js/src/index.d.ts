// Types of the Switchboard JavaScript client (the ES modules of this directory).

/** A body as given to publish, post and relay: text goes as UTF-8 (`text/plain`). */
export type Body = string | Uint8Array | ArrayBuffer | Blob;

export interface ConnectOptions {
  /** The session's name; a session that logs in is named after its user instead. */
  name?: string;
  /** Log in with a password (both together). */
  user?: string;
  password?: string;
  /** Log in with a bearer token (the admin token or a named token). */
  token?: string;
  /** Log in with a JSON Web Token (compact form). */
  jwt?: string;
  /** The server's pre-shared HMAC key: every frame is then tagged and checked. */
  hmacKey?: string | Uint8Array;
  /** Heartbeat interval asked for, ms (0 or absent: the server's default). */
  heartbeatMs?: number;
  /** How long a request waits for its answer before failing with code TIMEOUT, ms (default 10000). */
  requestTimeoutMs?: number;
  /** A WebSocket constructor, where there is no global one. */
  WebSocket?: { new (url: string | URL, protocols?: string | string[]): WebSocket };
  /** Software string sent to the server, for its logs. */
  software?: string;
}

export interface SessionInfo {
  clientId: bigint;
  sessionId: string;
  name: string;
  user: string | null;
  heartbeatMs: number;
  limits: { maxFrame: number; maxBody: number };
  serverSoftware: string;
}

export interface Sender {
  clientId: bigint;
  name: string;
}

export interface Message {
  /** The channel or group it was published to. */
  channel: string;
  /** 'channel' or 'group'. */
  scope: 'channel' | 'group';
  seq: number;
  /** The message id (UUID v7) in its canonical text form. */
  id: string;
  /** Server time of the publish, µs since the epoch. */
  timestampUs: number;
  from: Sender | null;
  /** Content type; '' when none was given. */
  contentType: string;
  /** User headers, in the order they were published. */
  headers: Array<[string, string]>;
  body: Uint8Array;
  /** Whether it came from history (replay or fetch) rather than live. */
  replay: boolean;
  text(): string;
  json(): any;
}

export interface PublishOptions {
  contentType?: string;
  /** User headers: an object or a list of [name, value] pairs (repeatable, ordered). */
  headers?: Record<string, string> | Array<[string, string]>;
  /** Called as the body goes out: (bytesSent, total). */
  onProgress?: (bytesSent: number, total: number) => void;
}

export interface PublishAck {
  channel: string;
  seq: number;
  id: string;
  /** The time in the message id (UUID v7): milliseconds precision, in µs. */
  timestampUs: number;
}

export type Replay =
  | undefined
  | 'all'
  | { last: number }
  | { sinceSeq: number }
  | { sinceTime: Date | number };

export interface SubscribeOptions {
  replay?: Replay;
  /** Called as a streamed body arrives: (bytesReceived, total, message). */
  onProgress?: (bytesReceived: number, total: number, message: Message) => void;
}

export class Subscription implements AsyncIterable<Message> {
  /** The server's subscription ids, one per pattern. */
  readonly ids: bigint[];
  readonly patterns: string[];
  /** How many replayed messages came first. */
  readonly replayCount: number;
  /** Called as a streamed body arrives: (bytesReceived, total, message). */
  onProgress?: (bytesReceived: number, total: number, message: Message) => void;
  /** Ends the subscription (unsubscribes); a pending iteration ends. */
  close(): Promise<void>;
  [Symbol.asyncIterator](): AsyncIterator<Message>;
}

export interface HistoryOptions {
  last?: number;
  sinceSeq?: number;
  sinceTime?: Date | number;
  limit?: number;
  onProgress?: (bytesReceived: number, total: number, message: Message) => void;
}

export interface ChannelOptions {
  maxChars?: number;
  maxHistory?: number;
  maxBody?: number;
  /** ms */
  maxAge?: number;
  maxTotalBytes?: number;
  slowConsumer?: 'disconnect' | 'drop-oldest';
}

export interface ChannelInfo {
  name: string;
  messages: number;
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  maxHistory: number | null;
  maxBody: number | null;
  maxChars: number | null;
  maxAge: number | null;
  maxTotalBytes: number | null;
  slowConsumer: 'disconnect' | 'drop-oldest' | null;
  durability: number | null;
}

export interface GroupInfo {
  name: string;
  description: string;
  members: number;
}

export interface GroupMember {
  /** The member's user name (membership is by name). */
  name: string;
  /** The same as name. */
  user: string;
  online: boolean;
}

export interface GroupFeedItem {
  group: string;
  /** 'deleted': the group was deleted, and with it the membership. */
  kind: 'message' | 'join' | 'leave' | 'deleted';
  /** With kind 'message'. */
  message?: Message;
  /** With kinds 'join' and 'leave'. */
  member?: string;
  /** With events: when it happened, µs. */
  timestampUs?: number;
}

export interface ClientInfo {
  clientId: bigint;
  /** The session's name (a logged-in session's is its user's). */
  name: string;
  /** Not told by the protocol's client list: null. */
  user: string | null;
  connectedSinceUs: number;
}

export interface RelayResult {
  clientId: bigint;
  status: 'delivered' | 'unknown' | 'dropped';
}

export interface DirectMessage {
  from: Sender;
  timestampUs: number;
  contentType: string;
  body: Uint8Array;
  text(): string;
  json(): any;
}

export interface Identity {
  clientId: bigint;
  name: string;
  sessionId: string;
  connectedSinceUs: number;
}

export interface Stat {
  name: string;
  value: number;
}

/** An async iterable of pushes; close() ends it. */
export interface Feed<T> extends AsyncIterable<T> {
  close(): void;
  next(): Promise<IteratorResult<T>>;
}

export class Client {
  static connect(url: string | URL, options?: ConnectOptions): Promise<Client>;
  readonly session: SessionInfo;
  /** Settles when the session ends: resolves on close(), rejects with the reason otherwise. */
  readonly closed: Promise<void>;

  publish(channel: string, body: Body, options?: PublishOptions): Promise<PublishAck>;
  subscribe(patterns: string | string[], options?: SubscribeOptions): Promise<Subscription>;
  history(channel: string, options?: HistoryOptions): Promise<Message[]>;
  latest(channel: string): Promise<Message | null>;
  getMessage(channel: string, id: string): Promise<Message>;
  tagMessages(tag: string, options?: { last?: number; sinceTime?: Date | number }): Promise<Message[]>;
  channels(): Promise<ChannelInfo[]>;
  createChannel(name: string, options?: ChannelOptions): Promise<ChannelInfo>;
  deleteChannel(name: string): Promise<void>;

  groups(): Promise<GroupInfo[]>;
  createGroup(name: string, description?: string): Promise<void>;
  joinGroup(name: string): Promise<void>;
  leaveGroup(name: string): Promise<void>;
  deleteGroup(name: string): Promise<void>;
  groupMembers(name: string): Promise<GroupMember[]>;
  post(group: string, body: Body, options?: PublishOptions): Promise<PublishAck>;
  groupMessages(group: string, options?: { sinceTime?: Date | number; last?: number; sinceSeq?: number }): Promise<Message[]>;
  groupFeed(): Feed<GroupFeedItem>;

  clients(): Promise<ClientInfo[]>;
  relay(clientIds: bigint | number | Array<bigint | number>, body: Body, options?: { contentType?: string }): Promise<RelayResult[]>;
  directFeed(): Feed<DirectMessage>;

  identity(): Promise<Identity>;
  stats(): Promise<Stat[]>;
  stopServer(): Promise<void>;
  reloadServer(): Promise<void>;
  close(): Promise<void>;
}

export class SwitchboardError extends Error {
  /** The protocol's error name ('FORBIDDEN', 'NOT_FOUND', ...), or 'CLOSED' / 'TIMEOUT'. */
  readonly code: string;
  /** The protocol's error number (106 for FORBIDDEN); 0 for CLOSED and TIMEOUT. */
  readonly number: number;
}

/** Error numbers by name, as in the protocol. */
export const ErrorCode: Readonly<Record<string, number>>;

/** CRC32C (Castagnoli) of bytes, continuing from a previous value when given. */
export function crc32c(bytes: Uint8Array, previous?: number): number;
