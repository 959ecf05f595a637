/**
 * What every front-end message is answered with, on success and on failure, in one place
 * (vhost-user.rst "Front-end message types" and "VHOST_USER_PROTOCOL_F_REPLY_ACK"; the table is
 * copied into docs/internals.md, "Replies").
 *
 * The rule: a frontend that waits for an answer always gets one. A message with a reply of its own
 * gets that reply on success; on failure it gets the error value its reply has (a zero-length
 * GET_CONFIG, a non-zero status), and where the reply has no way to say "error" (a feature mask, a
 * ring base, a count, an fd) the connection is closed with a log line — a made-up value would be
 * taken as the answer. Any other message is answered only when the frontend asked (NEED_REPLY, even
 * without REPLY_ACK negotiated: a frontend that set it is waiting), with a u64 status: 0 success,
 * non-zero failure. A request code the spec
 * does not define may be one the frontend waits on: without NEED_REPLY it closes the connection.
 */
import { FrontendReq, u64Payload } from './message.js';

/** How a failure of the message is reported. */
export type OnError =
  /** the REPLY_ACK status (non-zero) if the frontend asked for one; otherwise only the log line */
  | { kind: 'ack' }
  /** this reply payload, which the spec defines as an error */
  | { kind: 'reply'; payload: Buffer }
  /** the connection is closed (`why` goes into the log line): the reply cannot carry an error */
  | { kind: 'close'; why: string }
  /** the REPLY_ACK status if the frontend asked for one, else the connection is closed */
  | { kind: 'ack-or-close'; why: string };

export interface ReplyRule {
  /** the reply on success ('' for none of its own: a REPLY_ACK status when asked) */
  reply: string;
  onError: OnError;
}

const ACK: ReplyRule = { reply: '', onError: { kind: 'ack' } };
const close = (reply: string): ReplyRule => ({ reply, onError: { kind: 'close', why: `its reply (${reply}) cannot report an error` } });
const errorReply = (reply: string, payload: Buffer): ReplyRule => ({ reply, onError: { kind: 'reply', payload } });

/** SET_DEVICE_STATE_FD: bits 0-7 non-zero (error) and bit 8, "no fd returned". */
const DEVICE_STATE_FD_ERROR = 0x101n;

/** Messages with a reply of their own, and other exceptions; every other defined request code is ACK. */
const RULES = new Map<number, ReplyRule>([
  [FrontendReq.GET_FEATURES, close('u64 feature mask')],
  [FrontendReq.GET_PROTOCOL_FEATURES, close('u64 protocol feature mask')],
  [FrontendReq.GET_QUEUE_NUM, close('u64 queue count')],
  [FrontendReq.GET_VRING_BASE, close('vring state (index, next avail index)')],
  [FrontendReq.GET_MAX_MEM_SLOTS, close('u64 slot count')],
  [FrontendReq.GET_CONFIG, errorReply('config space', Buffer.alloc(0))],
  [FrontendReq.CREATE_CRYPTO_SESSION, close('crypto session')],
  [FrontendReq.POSTCOPY_ADVISE, close('userfaultfd')],
  [FrontendReq.POSTCOPY_END, errorReply('u64 status', u64Payload(1n))],
  [FrontendReq.GET_INFLIGHT_FD, close('inflight description + fd')],
  [FrontendReq.GET_STATUS, close('u64 device status')],
  [FrontendReq.GET_SHARED_OBJECT, errorReply('dma-buf fd', u64Payload(1n))],
  [FrontendReq.SET_DEVICE_STATE_FD, errorReply('u64 status (+ fd)', u64Payload(DEVICE_STATE_FD_ERROR))],
  [FrontendReq.CHECK_DEVICE_STATE, errorReply('u64 status', u64Payload(1n))],
  // No reply of its own, but a refusal the frontend does not hear of leaves it believing in features
  // it does not have (with REPLY_ACK among them it then waits for acks that never come): the spec
  // prescribes a close for the one such case it names (in-band notifications without their partners).
  [FrontendReq.SET_PROTOCOL_FEATURES, { reply: '', onError: { kind: 'ack-or-close', why: 'the frontend cannot hear the refusal without an ack' } }],
]);

/** A request code outside the spec: the frontend may be waiting, and nothing says on what. */
const UNKNOWN: ReplyRule = {
  reply: '(not defined)',
  onError: { kind: 'ack-or-close', why: 'the spec does not define it (the frontend may be waiting for a reply)' },
};

export function replyRule(request: number): ReplyRule {
  const own = RULES.get(request);
  if (own !== undefined) return own;
  return FrontendReq[request] === undefined ? UNKNOWN : ACK;
}

