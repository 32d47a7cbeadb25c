/**
 * Local fakes of the AWS endpoints the SDK's credential chain talks to, on one HTTP server on
 * 127.0.0.1, speaking their real wire formats:
 * - STS AssumeRole and AssumeRoleWithWebIdentity: Query API (form-encoded POST), XML answers and
 *   XML errors shaped as AWS shapes them. AssumeRole requests must carry a valid SigV4 signature by a
 *   key the fake knows (the signature is verified with that key's secret, not just parsed).
 * - The container credentials endpoint used by ECS and EKS Pod Identity
 *   (AWS_CONTAINER_CREDENTIALS_FULL_URI, with the Authorization token checked).
 * - The EC2 instance metadata service, IMDSv2 only (a session token is required, as with
 *   http-tokens=required).
 * Every call is recorded, and every credential handed out gets a fresh session token, so a test can
 * tell which issue of which identity signed a later request.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A key pair the fake hands out (and accepts as a signer once handed out or declared). */
export interface KeyPair {
  accessKeyId: string;
  secretAccessKey: string;
}

/** What one identity hands out on every call. */
export interface IssueSpec extends KeyPair {
  /** Lifetime of each issue in ms (Expiration = now + ttlMs). Default one hour. */
  ttlMs?: number;
}

/** One credential handed out by any of the fake endpoints. */
export interface Issued extends KeyPair {
  source: 'AssumeRole' | 'AssumeRoleWithWebIdentity' | 'container' | 'imds';
  /** Role ARN for STS, role name for IMDS, "" for the container endpoint. */
  identity: string;
  sessionToken: string;
  expiration: Date;
}

/** A role that AssumeRole can assume. */
export interface RoleSpec {
  issue: IssueSpec;
  /** Access key ids allowed to assume it (the trust policy); default: any key the fake knows. */
  trustedKeys?: string[];
  /** Required sts:ExternalId. */
  externalId?: string;
  /** Refuse every request with AccessDenied (a trust policy that does not name the caller). */
  deny?: boolean;
}

/** The IRSA setup: the role AssumeRoleWithWebIdentity grants to tokens of this subject. */
export interface WebIdentitySpec {
  roleArn: string;
  /** The token's `sub`, e.g. system:serviceaccount:sftp:s3sftp. */
  subject: string;
  /** The token's `aud`; EKS projects sts.amazonaws.com. */
  audience?: string;
  issue: IssueSpec;
}

/** One STS request as the fake saw it. */
export interface StsCall {
  action: string;
  params: Record<string, string>;
  /** Access key id of a verified SigV4 signature; undefined for unsigned requests. */
  signedBy?: string;
  /** x-amz-security-token of a signed request. */
  signedWithToken?: string;
  /** HTTP status of the answer. */
  status: number;
  /** The credential handed out, on success. */
  issued?: Issued;
}

export interface FakeAwsOptions {
  /** Long-term keys that may sign STS requests (the server's static keys). */
  knownKeys?: KeyPair[];
  roles?: Record<string, RoleSpec>;
  webIdentity?: WebIdentitySpec;
  /** The container credentials endpoint at `${url}${CONTAINER_PATH}`. */
  container?: { issue: IssueSpec; authorizationToken: string };
  /** IMDS under `${url}/latest/...`. */
  imds?: { roleName: string; issue: IssueSpec };
}

export interface FakeAws {
  /** http://127.0.0.1:PORT: the STS endpoint (AWS_ENDPOINT_URL_STS) and the IMDS endpoint. */
  url: string;
  /** The full container credentials URI (AWS_CONTAINER_CREDENTIALS_FULL_URI). */
  containerUri: string;
  stsCalls: StsCall[];
  /** Every credential handed out, in order. */
  issued: Issued[];
  containerCalls: { authorization: string | undefined; status: number }[];
  imdsCalls: { method: string; path: string; status: number }[];
  /** Roles can be added or changed while running. */
  roles: Map<string, RoleSpec>;
  /** A JWT-shaped token like the one EKS projects for a service account (unsigned: the fake does not check signatures). */
  webIdentityToken(subject: string, audience?: string): string;
  close(): Promise<void>;
}

export const CONTAINER_PATH = '/v2/credentials/pod-identity';
const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';
const ACCOUNT = '111122223333';
const HOUR = 3_600_000;

export async function startFakeAws(opts: FakeAwsOptions = {}): Promise<FakeAws> {
  const stsCalls: StsCall[] = [];
  const issued: Issued[] = [];
  const containerCalls: FakeAws['containerCalls'] = [];
  const imdsCalls: FakeAws['imdsCalls'] = [];
  const roles = new Map(Object.entries(opts.roles ?? {}));
  const imdsTokens = new Set<string>();
  const knownKeys = new Map((opts.knownKeys ?? []).map((k) => [k.accessKeyId, k.secretAccessKey]));
  let counter = 0;

  const issue = (source: Issued['source'], identity: string, spec: IssueSpec): Issued => {
    const creds: Issued = {
      source,
      identity,
      accessKeyId: spec.accessKeyId,
      secretAccessKey: spec.secretAccessKey,
      sessionToken: `FQoGZXIvYXdz-${source}-${++counter}-${randomBytes(6).toString('hex')}`,
      expiration: new Date(Date.now() + (spec.ttlMs ?? HOUR)),
    };
    issued.push(creds);
    // Issued keys may sign later requests (role chaining), as on AWS.
    knownKeys.set(creds.accessKeyId, creds.secretAccessKey);
    return creds;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname.startsWith('/latest/')) return imds(req, res, url.pathname);
    if (url.pathname === CONTAINER_PATH) return container(req, res);
    if (req.method === 'POST' && url.pathname === '/') return sts(req, res, body);
    send(res, 404, 'text/plain', 'not found');
  };

  const sts = (req: IncomingMessage, res: ServerResponse, body: Buffer): void => {
    const params = Object.fromEntries(new URLSearchParams(body.toString('utf8')));
    const call: StsCall = { action: params.Action ?? '', params, status: 0 };
    stsCalls.push(call);
    const fail = (status: number, code: string, message: string): void => {
      call.status = status;
      send(res, status, 'text/xml', stsError(code, message));
    };
    if (!/^application\/x-www-form-urlencoded/.test(req.headers['content-type'] ?? '')) {
      return fail(400, 'InvalidParameterValue', 'the Query API needs a form-encoded body');
    }
    if (params.Version !== '2011-06-15') return fail(400, 'InvalidParameterValue', `unsupported Version ${params.Version}`);
    const session = params.RoleSessionName ?? '';
    if (!/^[\w+=,.@-]{2,64}$/.test(session)) {
      return fail(400, 'ValidationError', `1 validation error detected: Value '${session}' at 'roleSessionName' failed to satisfy constraint`);
    }
    const duration = params.DurationSeconds === undefined ? 3600 : Number(params.DurationSeconds);
    if (!Number.isInteger(duration) || duration < 900 || duration > 43200) {
      return fail(400, 'ValidationError', `1 validation error detected: Value '${params.DurationSeconds}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900`);
    }

    if (call.action === 'AssumeRoleWithWebIdentity') {
      const spec = opts.webIdentity;
      const problem = spec ? checkWebIdentityToken(params.WebIdentityToken ?? '', spec) : 'no OpenID Connect provider';
      if (problem || !spec) return fail(400, 'InvalidIdentityToken', problem ?? '');
      if (params.RoleArn !== spec.roleArn) {
        return fail(403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');
      }
      call.issued = issue('AssumeRoleWithWebIdentity', spec.roleArn, spec.issue);
      call.status = 200;
      const tag = 'AssumeRoleWithWebIdentity';
      return send(res, 200, 'text/xml', `<${tag}Response xmlns="${STS_NS}">
  <${tag}Result>
    <SubjectFromWebIdentityToken>${xml(spec.subject)}</SubjectFromWebIdentityToken>
    <Audience>${xml(spec.audience ?? 'sts.amazonaws.com')}</Audience>
${assumedRoleXml(spec.roleArn, session, call.issued)}
    <Provider>arn:aws:iam::${ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/FAKE</Provider>
  </${tag}Result>
  <ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata>
</${tag}Response>`);
    }

    if (call.action === 'AssumeRole') {
      const signature = verifySigV4(req, body, (id) => knownKeys.get(id));
      if ('error' in signature) {
        return fail(403, signature.code, signature.error);
      }
      call.signedBy = signature.accessKeyId;
      call.signedWithToken = header(req, 'x-amz-security-token');
      const roleArn = params.RoleArn ?? '';
      const role = roles.get(roleArn);
      const caller = `arn:aws:sts::${ACCOUNT}:assumed-role/caller/${signature.accessKeyId}`;
      const denied = `User: ${caller} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`;
      if (!role || role.deny) return fail(403, 'AccessDenied', denied);
      if (role.trustedKeys && !role.trustedKeys.includes(signature.accessKeyId)) return fail(403, 'AccessDenied', denied);
      if (role.externalId !== undefined && params.ExternalId !== role.externalId) return fail(403, 'AccessDenied', denied);
      call.issued = issue('AssumeRole', roleArn, role.issue);
      call.status = 200;
      return send(res, 200, 'text/xml', `<AssumeRoleResponse xmlns="${STS_NS}">
  <AssumeRoleResult>
${assumedRoleXml(roleArn, session, call.issued)}
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata>
</AssumeRoleResponse>`);
    }
    return fail(400, 'InvalidAction', `Could not find operation ${call.action} for version 2011-06-15`);
  };

  const container = (req: IncomingMessage, res: ServerResponse): void => {
    const authorization = header(req, 'authorization');
    const spec = opts.container;
    const ok = req.method === 'GET' && spec !== undefined && authorization === spec.authorizationToken;
    containerCalls.push({ authorization, status: ok ? 200 : 403 });
    if (!ok || !spec) {
      return send(res, 403, 'application/json', JSON.stringify({ Code: 'AccessDeniedException', Message: 'bad authorization token' }));
    }
    const creds = issue('container', '', spec.issue);
    send(res, 200, 'application/json', JSON.stringify({
      AccessKeyId: creds.accessKeyId,
      SecretAccessKey: creds.secretAccessKey,
      Token: creds.sessionToken,
      AccountId: ACCOUNT,
      Expiration: creds.expiration.toISOString(),
    }));
  };

  const imds = (req: IncomingMessage, res: ServerResponse, path: string): void => {
    const record = (status: number): void => {
      imdsCalls.push({ method: req.method ?? '', path, status });
    };
    const spec = opts.imds;
    if (!spec) {
      record(404);
      return send(res, 404, 'text/plain', 'not found');
    }
    if (path === '/latest/api/token') {
      const ttl = Number(header(req, 'x-aws-ec2-metadata-token-ttl-seconds'));
      if (req.method !== 'PUT' || !Number.isInteger(ttl) || ttl < 1 || ttl > 21600) {
        record(400);
        return send(res, 400, 'text/plain', 'bad token request');
      }
      const token = randomBytes(24).toString('base64');
      imdsTokens.add(token);
      record(200);
      return send(res, 200, 'text/plain', token);
    }
    // IMDSv2 only: a GET without a session token is refused, as with http-tokens=required.
    if (req.method !== 'GET' || !imdsTokens.has(header(req, 'x-aws-ec2-metadata-token') ?? '')) {
      record(401);
      return send(res, 401, 'text/plain', 'Unauthorized');
    }
    const base = '/latest/meta-data/iam/security-credentials/';
    if (path === base) {
      record(200);
      return send(res, 200, 'text/plain', spec.roleName);
    }
    if (path === `${base}${spec.roleName}`) {
      const creds = issue('imds', spec.roleName, spec.issue);
      record(200);
      return send(res, 200, 'text/plain', JSON.stringify({
        Code: 'Success',
        LastUpdated: new Date().toISOString(),
        Type: 'AWS-HMAC',
        AccessKeyId: creds.accessKeyId,
        SecretAccessKey: creds.secretAccessKey,
        Token: creds.sessionToken,
        Expiration: creds.expiration.toISOString(),
      }));
    }
    record(404);
    send(res, 404, 'text/plain', 'not found');
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, 'text/plain', String(err));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    containerUri: `${url}${CONTAINER_PATH}`,
    stsCalls,
    issued,
    containerCalls,
    imdsCalls,
    roles,
    webIdentityToken: (subject, audience = 'sts.amazonaws.com') => makeJwt(subject, audience),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function assumedRoleXml(roleArn: string, session: string, creds: Issued): string {
  const roleName = roleArn.split('/').slice(1).join('/');
  return `    <AssumedRoleUser>
      <AssumedRoleId>AROA${randomBytes(8).toString('hex').toUpperCase()}:${xml(session)}</AssumedRoleId>
      <Arn>arn:aws:sts::${ACCOUNT}:assumed-role/${xml(roleName)}/${xml(session)}</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>${xml(creds.accessKeyId)}</AccessKeyId>
      <SecretAccessKey>${xml(creds.secretAccessKey)}</SecretAccessKey>
      <SessionToken>${xml(creds.sessionToken)}</SessionToken>
      <Expiration>${creds.expiration.toISOString()}</Expiration>
    </Credentials>`;
}

function stsError(code: string, message: string): string {
  const type = code === 'InternalFailure' ? 'Receiver' : 'Sender';
  return `<ErrorResponse xmlns="${STS_NS}">
  <Error>
    <Type>${type}</Type>
    <Code>${xml(code)}</Code>
    <Message>${xml(message)}</Message>
  </Error>
  <RequestId>${requestId()}</RequestId>
</ErrorResponse>`;
}

const b64url = (s: string): string => Buffer.from(s).toString('base64url');

function makeJwt(subject: string, audience: string): string {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'RS256', kid: 'fake' };
  const payload = {
    aud: [audience],
    exp: now + 86_400,
    iat: now,
    iss: 'https://oidc.eks.us-east-1.amazonaws.com/id/FAKE',
    sub: subject,
    'kubernetes.io': { namespace: subject.split(':')[2] ?? '', serviceaccount: { name: subject.split(':')[3] ?? '' } },
  };
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${b64url('fake-signature')}`;
}

/** Why STS would refuse this token, or undefined. Checks shape, subject, audience and expiry. */
function checkWebIdentityToken(token: string, spec: WebIdentitySpec): string | undefined {
  const parts = token.trim().split('.');
  if (parts.length !== 3) return 'The ID Token provided is not a valid JWT.';
  let payload: { sub?: unknown; aud?: unknown; exp?: unknown };
  try {
    payload = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as typeof payload;
  } catch {
    return 'The ID Token provided is not a valid JWT.';
  }
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (!audiences.includes(spec.audience ?? 'sts.amazonaws.com')) return 'Incorrect token audience';
  if (payload.sub !== spec.subject) return 'Not authorized: token subject does not match the trust policy';
  if (typeof payload.exp !== 'number' || payload.exp * 1000 < Date.now()) return 'Token expired';
  return undefined;
}

type SigV4Result = { accessKeyId: string } | { error: string; code: string };

/**
 * Verifies an AWS Signature Version 4 Authorization header: recomputes the signature from the
 * canonical request with the secret of the named key. Enough of SigV4 for the SDK's STS requests
 * (header signing, any path and query).
 */
export function verifySigV4(req: IncomingMessage, body: Buffer, secretOf: (accessKeyId: string) => string | undefined): SigV4Result {
  const auth = header(req, 'authorization') ?? '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return { code: 'MissingAuthenticationToken', error: 'Request is missing Authentication Token' };
  const [, accessKeyId = '', date = '', region = '', service = '', signedHeaders = '', signature = ''] = m;
  const secret = secretOf(accessKeyId);
  if (secret === undefined) return { code: 'InvalidClientTokenId', error: 'The security token included in the request is invalid.' };
  const amzDate = header(req, 'x-amz-date') ?? '';
  if (!amzDate.startsWith(date)) return { code: 'IncompleteSignature', error: 'Date in Credential scope does not match x-amz-date' };
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const enc = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...url.searchParams.entries()]
    .map(([k, v]) => [enc(k), enc(v)] as const)
    .sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : 1) : a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const names = signedHeaders.split(';');
  const canonicalHeaders = names.map((n) => `${n}:${(header(req, n) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const payloadHash = header(req, 'x-amz-content-sha256') ?? sha256(body);
  const canonical = [req.method, url.pathname, query, canonicalHeaders, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  let key: Buffer = hmac(`AWS4${secret}`, date);
  for (const part of [region, service, 'aws4_request']) key = hmac(key, part);
  const expected = createHmac('sha256', key).update(toSign).digest();
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
    return { code: 'SignatureDoesNotMatch', error: 'The request signature we calculated does not match the signature you provided.' };
  }
  return { accessKeyId };
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(',') : v;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'x-amzn-requestid': requestId() });
  res.end(body);
}

function requestId(): string {
  return randomBytes(16).toString('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');
}

function xml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);
}
