// TLS for an agent (InitOptions.tls): the options, their checks, and the credentials built from
// them once per agent for the gRPC server, the gRPC channels and the bulk side channel's sockets.
//
// Host names are verified by node's tls.checkServerIdentity against the host the connection was
// made to, which is always the peer's published host (the `master` option's host, a WorkerInfo
// address's host): grpc-js passes its channel target's host, and the side channel passes the
// host it was told to connect to (a name is resolved, and still checked as the name). So every
// agent's certificate must name (subjectAltName DNS or IP) the host it advertises; no
// 'grpc.ssl_target_name_override' is needed or used.
//
// The native bulk transport speaks plain TCP and maps shared memory; neither is used under TLS
// (bulk-socket.ts: SideOffer.listen and connectSide take the JS path when given a WorldTls).
import * as grpc from '@grpc/grpc-js';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import * as tls from 'node:tls';
import { errors } from './errors.js';

export interface TlsOptions {
  /** This agent's certificate chain, PEM (contents, not a path); it must name the host the agent advertises. */
  cert: string | Buffer;
  /** The private key of `cert`, PEM, unencrypted. Never shown in errors. */
  key: string | Buffer;
  /** The CA certificate(s), PEM, that peers' certificates must chain to (default: the system's roots). */
  ca?: string | Buffer;
  /**
   * Mutual TLS: this agent's server (gRPC and side-channel listeners) accepts only clients that
   * present a certificate signed by `ca` (default false: clients are not asked for one). Every
   * agent presents its own `cert` when asked, so a world can turn this on everywhere.
   */
  requireClientCert?: boolean;
}

/** Resolved TLS settings of one agent: PEM buffers and the credentials built from them once. */
export interface WorldTls {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
  readonly requireClientCert: boolean;
  /** For the agent's gRPC server. */
  readonly server: grpc.ServerCredentials;
  /** For every gRPC channel the agent opens (peers, the master): presents cert, checks the server's against ca. */
  readonly channel: grpc.ChannelCredentials;
  /** For the side channel's outgoing sockets (tls.connect). */
  readonly context: tls.SecureContext;
}

const pem = (value: unknown): Buffer | undefined =>
  typeof value === 'string' && value.length > 0 ? Buffer.from(value, 'utf8') : Buffer.isBuffer(value) && value.length > 0 ? value : undefined;

const kind = (value: unknown) => (value === null ? 'null' : Buffer.isBuffer(value) ? 'an empty Buffer' : typeof value === 'string' ? 'an empty string' : typeof value);

/**
 * Checks InitOptions.tls and builds its credentials. Messages name the option and what is wrong,
 * never the contents (a key is a secret; a certificate is just long): they end up in logs.
 */
export function checkTls(value: unknown): WorldTls | undefined {
  if (value === undefined) return undefined;
  const fail = (option: string, why: string) => errors.invalidSecretOption(`tls.${option}`, why);
  if (typeof value !== 'object' || value === null) throw errors.invalidSecretOption('tls', `expected an object { cert, key, ca?, requireClientCert? }, got ${value === null ? 'null' : typeof value}`);
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['cert', 'key', 'ca', 'requireClientCert'].includes(k)) throw fail(k, 'unknown option (expected cert, key, ca, requireClientCert)');
  const cert = pem(o.cert);
  if (!cert) throw fail('cert', `expected PEM contents (string or Buffer), got ${kind(o.cert)}`);
  const key = pem(o.key);
  if (!key) throw fail('key', `expected PEM contents (string or Buffer), got ${kind(o.key)}`);
  const ca = o.ca === undefined ? undefined : pem(o.ca);
  if (o.ca !== undefined && !ca) throw fail('ca', `expected PEM contents (string or Buffer), got ${kind(o.ca)}`);
  const requireClientCert = o.requireClientCert ?? false;
  if (typeof requireClientCert !== 'boolean') throw errors.invalidOption('tls.requireClientCert', requireClientCert, 'expected a boolean');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw fail('cert', 'not a PEM certificate (expected -----BEGIN CERTIFICATE-----)');
  }
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(key);
  } catch (e) {
    const why = /passphrase/i.test((e as Error).message) ? 'an encrypted key (a passphrase is not supported: decrypt it first)' : 'not a PEM private key';
    throw fail('key', why);
  }
  if (!x509.checkPrivateKey(keyObject)) throw fail('key', 'does not belong to tls.cert (the certificate\'s public key does not match)');
  if (ca) {
    try {
      new X509Certificate(ca); // the first one; a self-signed `cert` may be its own ca
    } catch {
      throw fail('ca', 'not a PEM certificate (expected -----BEGIN CERTIFICATE-----)');
    }
  }
  return {
    cert, key, ca, requireClientCert,
    server: grpc.ServerCredentials.createSsl(ca ?? null, [{ cert_chain: cert, private_key: key }], requireClientCert),
    channel: grpc.credentials.createSsl(ca ?? null, key, cert),
    context: tls.createSecureContext({ cert, key, ...(ca ? { ca } : {}) }),
  };
}

/** tls.createServer's options for a side-channel listener of an agent with `t`. */
export function sideServerOptions(t: WorldTls, handshakeTimeout: number): tls.TlsOptions {
  return { cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}), requestCert: t.requireClientCert, rejectUnauthorized: true, handshakeTimeout };
}
