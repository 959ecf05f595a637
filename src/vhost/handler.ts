/**
 * The front-end request handler: the vhost-user protocol state machine for one connection. It checks
 * every message (exact payload size, fds only where the spec sends them, requests gated on negotiated
 * features), applies it to the device and replies. Messages are handled strictly in order, one at a
 * time, even though applying one may wait for the workers to pause. A message that fails is answered
 * as the reply table (replies.ts) says: never with silence when the frontend waits.
 */
import { native } from '../native.js';
import type { Logger } from '../log.js';
import { Errno, VhostUserProtocolError, VirtiofsdError } from '../errors.js';
import type { VirtioFsDevice } from '../virtio/device.js';
import {
  FrontendReq,
  ProtocolFeature,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_VERSION,
  VHOST_USER_VERSION_MASK,
  VHOST_USER_VRING_IDX_MASK,
  VHOST_USER_VRING_NOFD_MASK,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  type Message,
  expectSize,
  readMemTable,
  readSingleRegion,
  readU64,
  readVringAddr,
  readVringState,
  reqName,
  u64Payload,
  vringStatePayload,
} from './message.js';
import { replyRule } from './replies.js';
import { VhostUserStats } from './stats.js';

const bit = (n: bigint | number): bigint => 1n << BigInt(n);

const EVENTFD_LINK = Buffer.from('anon_inode:[eventfd]');
const linkBuf = Buffer.alloc(64);

/** An eventfd's /proc/self/fd link reads "anon_inode:[eventfd]" (read through the addon: inside the sandbox /proc has no path). */
export function isEventfd(fd: number): boolean {
  const n = native.procFdLink(fd, linkBuf);
  return n === EVENTFD_LINK.length && linkBuf.subarray(0, n).equals(EVENTFD_LINK);
}

/** What we offer in GET_FEATURES. */
export const BACKEND_FEATURES =
  bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VHOST_USER_F_PROTOCOL_FEATURES);

/** What we offer in GET_PROTOCOL_FEATURES. */
export const BACKEND_PROTOCOL_FEATURES =
  bit(ProtocolFeature.MQ) | bit(ProtocolFeature.REPLY_ACK) | bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) | bit(ProtocolFeature.RESET_DEVICE);

/** Requests that carry fds (vhost-user.rst); any other request's fds are closed unread. */
const FD_REQUESTS = new Set<number>([
  FrontendReq.SET_MEM_TABLE,
  FrontendReq.SET_LOG_BASE,
  FrontendReq.SET_LOG_FD,
  FrontendReq.SET_VRING_KICK,
  FrontendReq.SET_VRING_CALL,
  FrontendReq.SET_VRING_ERR,
  FrontendReq.SET_BACKEND_REQ_FD,
  FrontendReq.SET_INFLIGHT_FD,
  FrontendReq.ADD_MEM_REG,
  FrontendReq.SET_DEVICE_STATE_FD,
]);

type Sender = (request: number, payload: Buffer) => void;
/** Ends the connection (the reason is logged by whoever owns it). */
type Closer = (reason: string) => void;

export class FrontendReqHandler {
  private ackedFeatures = 0n;
  private ackedProtocolFeatures = 0n;
  private owner = false;
  private chain: Promise<void> = Promise.resolve();
  private backendReqFd = -1;
  /** The connection was closed over a failed message: what is still queued is dropped. */
  private closed = false;

  constructor(
    private readonly device: VirtioFsDevice,
    private readonly send: Sender,
    private readonly log: Logger,
    private readonly closeConnection: Closer,
    private readonly stats: VhostUserStats = new VhostUserStats(),
  ) {}

  /** Queues a message; they run one after the other. */
  enqueue(m: Message): Promise<void> {
    this.chain = this.chain.then(() => this.handle(m));
    return this.chain;
  }

  /**
   * NEED_REPLY asks for a REPLY_ACK status. The spec lets a frontend set it only once REPLY_ACK is
   * negotiated, but one that set it is waiting: QEMU reconnecting to a restarted daemon keeps its old
   * negotiation and blocks, VM stopped, on the ack of its first message. So it is answered whenever it
   * is asked for (said once per connection when REPLY_ACK was not negotiated).
   */
  private replyAckWanted(m: Message): boolean {
    if ((m.flags & VHOST_USER_NEED_REPLY_MASK) === 0) return false;
    if ((this.ackedProtocolFeatures & bit(ProtocolFeature.REPLY_ACK)) === 0n && !this.warnedUnnegotiatedAck) {
      this.warnedUnnegotiatedAck = true;
      this.log.warn(`vhost-user: ${reqName(m.request)} asks for an ack without REPLY_ACK negotiated (a frontend reconnecting with its old state?); answering anyway`);
    }
    return true;
  }
  private warnedUnnegotiatedAck = false;

  async handle(m: Message): Promise<void> {
    const name = reqName(m.request);
    if (this.closed) {
      for (const fd of m.fds) native.close(fd);
      return;
    }
    this.log.debug(`vhost-user: ${name} flags=0x${m.flags.toString(16)} size=${m.size} fds=${m.fds.length}`);
    let fds = m.fds;
    if (!FD_REQUESTS.has(m.request) && fds.length > 0) {
      this.log.warn(`vhost-user: ${name} came with ${fds.length} unexpected fd(s); closed them`);
      for (const fd of fds) native.close(fd);
      fds = [];
      m = { ...m, fds };
    }
    let failed = false;
    let replied = false;
    try {
      if ((m.flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) {
        throw new VhostUserProtocolError(`${name}: unsupported message version ${m.flags & VHOST_USER_VERSION_MASK}`);
      }
      replied = await this.dispatch(m);
    } catch (e) {
      failed = true;
      if (e instanceof VirtiofsdError) {
        this.log.error(`vhost-user: ${name} rejected: ${e.message}`);
      } else {
        this.log.error(`vhost-user: ${name} failed: ${(e as Error)?.stack ?? e}`);
      }
    } finally {
      // fds the device did not take (a failed or fd-less variant of the message) are ours to close.
      for (const fd of m.fds) if (fd >= 0 && !this.consumed.has(fd)) native.close(fd);
      this.consumed.clear();
    }
    this.stats.message(m.request, failed);
    if (failed) this.answerFailure(m);
    // REPLY_ACK: a u64 status for messages that have no reply of their own (0 = success).
    else if (!replied && this.replyAckWanted(m)) this.send(m.request, u64Payload(0n));
  }

  /** A message failed: answer it as the reply table says, so that a frontend waiting on it never hangs. */
  private answerFailure(m: Message): void {
    const how = replyRule(m.request).onError;
    switch (how.kind) {
      case 'reply':
        this.send(m.request, how.payload);
        return;
      case 'ack-or-close':
      case 'ack':
        if (this.replyAckWanted(m)) this.send(m.request, u64Payload(1n));
        else if (how.kind === 'ack-or-close') this.closeOver(m, how.why);
        return;
      case 'close':
        this.closeOver(m, how.why);
        return;
    }
  }

  private closeOver(m: Message, why: string): void {
    this.closed = true;
    this.closeConnection(`${reqName(m.request)} failed and ${why}; closing the connection`);
  }

  /** fds handed over to the device (which then owns them). */
  private readonly consumed = new Set<number>();
  private take(m: Message, i: number): number {
    const fd = m.fds[i]!;
    this.consumed.add(fd);
    return fd;
  }

  private requireFeature(m: Message, f: ProtocolFeature): void {
    if ((this.ackedProtocolFeatures & bit(f)) === 0n) {
      throw new VhostUserProtocolError(`${reqName(m.request)} needs protocol feature ${ProtocolFeature[f]}, not negotiated`);
    }
  }

  private queueIndex(m: Message, idx: number): number {
    if (idx >= this.device.numQueues) {
      throw new VhostUserProtocolError(`${reqName(m.request)}: queue index ${idx} out of range (${this.device.numQueues} queues)`);
    }
    return idx;
  }

  /** Reads the u64 of SET_VRING_KICK/CALL/ERR: the index and, unless NOFD, the fd. */
  private vringFd(m: Message): { q: number; fd: number } {
    const v = readU64(m);
    if ((v & ~(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK)) !== 0n) {
      throw new VhostUserProtocolError(`${reqName(m.request)}: reserved bits set in 0x${v.toString(16)}`);
    }
    const q = this.queueIndex(m, Number(v & VHOST_USER_VRING_IDX_MASK));
    const nofd = (v & VHOST_USER_VRING_NOFD_MASK) !== 0n;
    if (nofd) {
      if (m.fds.length !== 0) throw new VhostUserProtocolError(`${reqName(m.request)}: NOFD set but an fd was sent`);
      return { q, fd: -1 };
    }
    if (m.fds.length !== 1) throw new VhostUserProtocolError(`${reqName(m.request)}: expected 1 fd, got ${m.fds.length}`);
    // Workers poll kick fds and write call fds from the request path: anything but an eventfd (a
    // regular file is always readable, a full pipe blocks the writer) would spin or hang a worker.
    if (!isEventfd(m.fds[0]!)) throw new VhostUserProtocolError(`${reqName(m.request)}: queue ${q}: the fd is not an eventfd`);
    return { q, fd: this.take(m, 0) };
  }

  private noFds(m: Message, n = 0): void {
    if (m.fds.length !== n) throw new VhostUserProtocolError(`${reqName(m.request)}: expected ${n} fd(s), got ${m.fds.length}`);
  }

  /** Applies one message. True if it sent its own reply. */
  private async dispatch(m: Message): Promise<boolean> {
    const d = this.device;
    switch (m.request) {
      case FrontendReq.GET_FEATURES:
        expectSize(m, 0);
        this.send(m.request, u64Payload(BACKEND_FEATURES));
        return true;
      case FrontendReq.SET_FEATURES: {
        const f = readU64(m);
        if ((f & ~BACKEND_FEATURES) !== 0n) {
          throw new VhostUserProtocolError(`SET_FEATURES: 0x${f.toString(16)} includes features we did not offer`);
        }
        this.ackedFeatures = f;
        d.ringsStartDisabled = (f & bit(VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n;
        d.eventIdx = (f & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
        this.log.debug(`vhost-user: features acked 0x${f.toString(16)}`);
        return false;
      }
      case FrontendReq.GET_PROTOCOL_FEATURES:
        expectSize(m, 0);
        this.send(m.request, u64Payload(BACKEND_PROTOCOL_FEATURES));
        return true;
      case FrontendReq.SET_PROTOCOL_FEATURES: {
        const f = readU64(m);
        if ((f & ~BACKEND_PROTOCOL_FEATURES) !== 0n) {
          throw new VhostUserProtocolError(`SET_PROTOCOL_FEATURES: 0x${f.toString(16)} includes features we did not offer`);
        }
        this.ackedProtocolFeatures = f;
        return false;
      }
      case FrontendReq.SET_OWNER:
        expectSize(m, 0);
        if (this.owner) this.log.debug('vhost-user: SET_OWNER again');
        this.owner = true;
        return false;
      case FrontendReq.RESET_OWNER:
        expectSize(m, 0);
        this.owner = false;
        this.ackedFeatures = 0n;
        await d.reset();
        return false;
      case FrontendReq.RESET_DEVICE:
        expectSize(m, 0);
        this.requireFeature(m, ProtocolFeature.RESET_DEVICE);
        this.ackedFeatures = 0n;
        await d.reset();
        return false;
      case FrontendReq.GET_QUEUE_NUM:
        expectSize(m, 0);
        this.send(m.request, u64Payload(BigInt(d.numQueues)));
        return true;
      case FrontendReq.GET_MAX_MEM_SLOTS:
        expectSize(m, 0);
        this.send(m.request, u64Payload(BigInt(this.device.memory.maxSlots)));
        return true;
      case FrontendReq.SET_MEM_TABLE: {
        const regions = readMemTable(m);
        const fds = m.fds.map((_, i) => this.take(m, i));
        await d.setMemTable(regions, fds);
        this.log.info(`guest memory: ${regions.length} region(s), ${d.memory.totalBytes >> 20n} MiB mapped`);
        return false;
      }
      case FrontendReq.ADD_MEM_REG: {
        this.requireFeature(m, ProtocolFeature.CONFIGURE_MEM_SLOTS);
        const r = readSingleRegion(m);
        this.noFds(m, 1);
        await d.addMemRegion(r, this.take(m, 0));
        this.log.info(`guest memory: region added, ${d.memory.totalBytes >> 20n} MiB mapped`);
        return false;
      }
      case FrontendReq.REM_MEM_REG: {
        this.requireFeature(m, ProtocolFeature.CONFIGURE_MEM_SLOTS);
        const r = readSingleRegion(m);
        await d.removeMemRegion(r);
        return false;
      }
      case FrontendReq.SET_VRING_NUM: {
        const s = readVringState(m);
        await d.setVringNum(this.queueIndex(m, s.index), s.num);
        return false;
      }
      case FrontendReq.SET_VRING_ADDR: {
        const a = readVringAddr(m);
        const q = this.queueIndex(m, a.index);
        // flags bit 0 (VHOST_VRING_F_LOG) asks for dirty logging, which we do not offer.
        await d.setVringAddr(q, { desc: a.descUserAddr, avail: a.availUserAddr, used: a.usedUserAddr });
        return false;
      }
      case FrontendReq.SET_VRING_BASE: {
        const s = readVringState(m);
        await d.setVringBase(this.queueIndex(m, s.index), s.num);
        return false;
      }
      case FrontendReq.GET_VRING_BASE: {
        // A bad payload or index closes the connection (replies.ts): a ring state cannot say "error".
        const s = readVringState(m);
        const q = this.queueIndex(m, s.index);
        // The frontend blocks until this reply comes: answer even if stopping the ring failed.
        let base: number;
        try {
          base = await d.getVringBase(q);
        } catch (e) {
          this.log.with({ queue: q }).error(`GET_VRING_BASE: queue ${q}: ${(e as Error).message}; answering with the last known base`);
          base = d.ring(q).base;
        }
        this.send(m.request, vringStatePayload(q, base));
        return true;
      }
      case FrontendReq.SET_VRING_KICK: {
        const { q, fd } = this.vringFd(m);
        if (fd < 0) throw new VhostUserProtocolError(`SET_VRING_KICK: queue ${q}: polling mode (no kick fd) is not supported`);
        await d.setVringKick(q, fd);
        return false;
      }
      case FrontendReq.SET_VRING_CALL: {
        const { q, fd } = this.vringFd(m);
        await d.setVringCall(q, fd);
        return false;
      }
      case FrontendReq.SET_VRING_ERR: {
        const { q, fd } = this.vringFd(m);
        d.setVringErr(q, fd);
        return false;
      }
      case FrontendReq.SET_VRING_ENABLE: {
        const s = readVringState(m);
        if ((this.ackedFeatures & bit(VHOST_USER_F_PROTOCOL_FEATURES)) === 0n) {
          throw new VhostUserProtocolError('SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES');
        }
        if (s.num > 1) throw new VhostUserProtocolError(`SET_VRING_ENABLE: enable must be 0 or 1, got ${s.num}`);
        await d.setVringEnable(this.queueIndex(m, s.index), s.num === 1);
        return false;
      }
      case FrontendReq.SET_BACKEND_REQ_FD: {
        this.noFds(m, 1);
        // We send no backend requests yet (DAX comes later), but keep the channel for its lifetime.
        if (this.backendReqFd >= 0) native.close(this.backendReqFd);
        this.backendReqFd = this.take(m, 0);
        return false;
      }
      case FrontendReq.SET_VRING_ENDIAN:
        throw new VhostUserProtocolError('SET_VRING_ENDIAN: legacy (non-VERSION_1) devices are not supported');
      default:
        throw new VhostUserProtocolError(`unsupported request ${reqName(m.request)}`, Errno.ENOSYS);
    }
  }

  /** Connection gone: drop everything that belonged to it. */
  async disconnect(): Promise<void> {
    await this.chain.catch(() => undefined);
    if (this.backendReqFd >= 0) native.close(this.backendReqFd);
    this.backendReqFd = -1;
    await this.device.reset();
  }
}
