/**
 * One vhost-user connection: frames messages off a non-blocking Unix stream socket (with the fds that
 * came with each header) and writes replies. Framing is exact: the header is read on its own, then
 * exactly `size` payload bytes, so ancillary data always belongs to the message whose header it
 * came with (the kernel never glues two skbs with different SCM_RIGHTS into one read).
 */
import { Errno } from '../errors.js';
import { native } from '../native.js';
import {
  HEADER_SIZE,
  MAX_PAYLOAD_SIZE,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION,
  type Message,
  encodeHeader,
  parseHeader,
  reqName,
} from './message.js';

const { EAGAIN, EINTR } = Errno;
const MAX_FDS = 8;

export interface ConnectionEvents {
  onMessage(m: Message): void;
  /** The peer closed, or the stream is unusable (`reason` says why). Called once. */
  onClose(reason: string | null): void;
}

export class Connection {
  private readonly hdr = Buffer.alloc(HEADER_SIZE);
  private hdrHave = 0;
  private payload: Buffer | null = null;
  private payloadHave = 0;
  private pendingFds: number[] = [];
  private request = 0;
  private flags = 0;
  private readonly fdBuf = new Int32Array(MAX_FDS);
  private watch: { stop(): void } | null;
  private closed = false;

  constructor(readonly fd: number, private readonly ev: ConnectionEvents) {
    this.watch = native.watchFd(fd, (revents) => this.onReadable(revents));
  }

  private onReadable(revents: number): void {
    if (this.closed) return;
    // Read until EAGAIN; a hangup shows up as a read of 0 bytes (EOF).
    let again = false;
    for (let guard = 0; guard < 1024 && !this.closed; guard++) {
      if (!this.readSome()) {
        again = true;
        break;
      }
    }
    // An error condition that never turns into a failed read would make libuv call us forever.
    if (!this.closed && again && (revents & 2) !== 0) this.close('socket error');
  }

  /** One read step. False when there is nothing more to read now. */
  private readSome(): boolean {
    if (this.payload === null) {
      const n = native.recvMsg(this.fd, this.hdr, this.hdrHave, HEADER_SIZE - this.hdrHave, this.fdBuf);
      if (n === -EAGAIN || n === -EINTR) return false;
      this.takeFds();
      if (n < 0) {
        this.close(`read failed: errno ${-n}`);
        return false;
      }
      if (n === 0) {
        this.close(this.hdrHave === 0 ? null : 'connection closed in the middle of a message');
        return false;
      }
      this.hdrHave += n;
      if (this.hdrHave < HEADER_SIZE) return true;
      const h = parseHeader(this.hdr);
      this.request = h.request;
      this.flags = h.flags;
      if (h.size > MAX_PAYLOAD_SIZE) {
        // We cannot resynchronise a stream whose framing we do not trust.
        this.close(`${reqName(h.request)}: payload size ${h.size} exceeds ${MAX_PAYLOAD_SIZE}; closing the connection`);
        return false;
      }
      this.payload = Buffer.alloc(h.size);
      this.payloadHave = 0;
      if (h.size > 0) return true;
    } else {
      const want = this.payload.length - this.payloadHave;
      const n = native.recvMsg(this.fd, this.payload, this.payloadHave, want, this.fdBuf);
      if (n === -EAGAIN || n === -EINTR) return false;
      // fds may only come with the header; any here are surplus and are dropped
      this.takeFds(true);
      if (n <= 0) {
        this.close(n === 0 ? 'connection closed in the middle of a message' : `read failed: errno ${-n}`);
        return false;
      }
      this.payloadHave += n;
      if (this.payloadHave < this.payload.length) return true;
    }
    const m: Message = { request: this.request, flags: this.flags, size: this.payload.length, payload: this.payload, fds: this.pendingFds };
    this.pendingFds = [];
    this.payload = null;
    this.hdrHave = 0;
    this.ev.onMessage(m);
    return true;
  }

  private takeFds(discard = false): void {
    for (let i = 0; i < MAX_FDS; i++) {
      const fd = this.fdBuf[i]!;
      if (fd < 0) continue;
      this.fdBuf[i] = -1;
      if (discard) native.close(fd);
      else this.pendingFds.push(fd);
    }
  }

  /** Sends a reply: the request's own code, version 1 with the reply bit. */
  reply(request: number, payload: Buffer): boolean {
    if (this.closed) return false;
    const msg = Buffer.concat([encodeHeader(request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, payload.length), payload]);
    let off = 0;
    // Replies are tiny; the socket buffer takes them whole unless the peer stopped reading. Retry a
    // few times on EAGAIN rather than queueing: a frontend that does not read its replies is broken.
    for (let tries = 0; off < msg.length && tries < 1000; tries++) {
      const n = native.sendMsg(this.fd, msg, off, msg.length - off, null);
      if (n === -EAGAIN || n === -EINTR) continue;
      if (n < 0) {
        this.close(`write failed: errno ${-n}`);
        return false;
      }
      off += n;
    }
    if (off < msg.length) {
      this.close('the frontend does not read its replies');
      return false;
    }
    return true;
  }

  close(reason: string | null): void {
    if (this.closed) return;
    this.closed = true;
    this.watch?.stop();
    this.watch = null;
    for (const fd of this.pendingFds) native.close(fd);
    this.pendingFds = [];
    native.close(this.fd);
    this.ev.onClose(reason);
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
