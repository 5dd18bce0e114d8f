/**
 * The etcd key schema. Every key crms writes is built here and nowhere else.
 *
 *   <prefix>jobs/<id>            Job (protobuf binary)
 *   <prefix>reqids/<request id>  job id a request id created (idempotent submit)
 *   <prefix>workers/<name>       Worker, bound to the lease of the replica holding its stream
 *   <prefix>replicas/<id>        replica id, bound to that replica's lease
 *   <prefix>leader               scheduler leader's replica id, bound to its lease
 *   <prefix>idseq                next free job id (blocks are reserved from it)
 *   <prefix>expired              highest job id deleted by retention
 *   <prefix>tokens/<sha256>      API token record (JSON), keyed by the hash of its secret
 *   <prefix>queues/<name>        Queue settings (protobuf binary)
 *   <prefix>fairshare            decayed fair-share usage per queue and user (JSON), saved by the leader
 */
export class Keys {
  constructor(readonly prefix: string) {}

  get jobs(): string {
    return `${this.prefix}jobs/`;
  }
  job(id: string): string {
    return `${this.jobs}${id}`;
  }
  get reqids(): string {
    return `${this.prefix}reqids/`;
  }
  reqid(requestId: string): string {
    return `${this.reqids}${requestId}`;
  }
  get workers(): string {
    return `${this.prefix}workers/`;
  }
  worker(name: string): string {
    return `${this.workers}${name}`;
  }
  get replicas(): string {
    return `${this.prefix}replicas/`;
  }
  replica(id: string): string {
    return `${this.replicas}${id}`;
  }
  get leader(): string {
    return `${this.prefix}leader`;
  }
  get idseq(): string {
    return `${this.prefix}idseq`;
  }
  get expired(): string {
    return `${this.prefix}expired`;
  }
  get tokens(): string {
    return `${this.prefix}tokens/`;
  }
  token(hash: string): string {
    return `${this.tokens}${hash}`;
  }
  get queues(): string {
    return `${this.prefix}queues/`;
  }
  queue(name: string): string {
    return `${this.queues}${name}`;
  }
  get fairShare(): string {
    return `${this.prefix}fairshare`;
  }
}
