/** SFTP wire encoding for tests that feed packets to a parser by hand (draft-ietf-secsh-filexfer-02). */

export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

export const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

/** A string: its length, then its bytes. */
export const str = (b: Buffer | string): Buffer => {
  const s = typeof b === 'string' ? Buffer.from(b) : b;
  return Buffer.concat([u32(s.length), s]);
};

/** One packet: length, type, then the parts. */
export const packet = (type: number, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat([Buffer.from([type]), ...parts]);
  return Buffer.concat([u32(body.length), body]);
};
