/**
 * HTTP agents whose connect timeout counts connecting only.
 *
 * @smithy/node-http-handler's `connectionTimeout` starts its timer when the request is created,
 * and a request queued in the agent for a free socket (maxSockets reached) waits on that same
 * timer: under load, requests failed with "storage backend timed out" without ever reaching S3.
 * These agents time the TCP connect of each new socket instead, so waiting for a socket is never
 * an S3 timeout; whole-request deadlines stay with each caller's abortSignal.
 */
import { Agent as HttpAgent, type AgentOptions } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

/** Destroys `socket` unless it connects within `ms`. */
function timeConnect(socket: Duplex, ms: number): void {
  const s = socket as Socket;
  if (!s.connecting) return;
  const timer = setTimeout(() => s.destroy(Object.assign(new Error(`could not connect to S3 within ${ms} ms`), { code: 'ETIMEDOUT' })), ms);
  timer.unref();
  s.once('connect', () => clearTimeout(timer));
  s.once('close', () => clearTimeout(timer));
}

type CreateConnection = (options: unknown, callback?: unknown) => Duplex;

function withConnectTimeout<T extends { createConnection?: unknown }>(agent: T, ms: number): T {
  const create = (agent.createConnection as CreateConnection).bind(agent);
  agent.createConnection = ((options: unknown, callback?: unknown) => {
    const socket = create(options, callback);
    if (socket) timeConnect(socket, ms);
    return socket;
  }) as T['createConnection'];
  return agent;
}

/** An http.Agent whose sockets must connect within `connectTimeoutMs`. */
export function httpAgent(options: AgentOptions, connectTimeoutMs: number): HttpAgent {
  return withConnectTimeout(new HttpAgent(options), connectTimeoutMs);
}

/** An https.Agent whose sockets must connect (TCP) within `connectTimeoutMs`. */
export function httpsAgent(options: AgentOptions, connectTimeoutMs: number): HttpsAgent {
  return withConnectTimeout(new HttpsAgent(options), connectTimeoutMs);
}
