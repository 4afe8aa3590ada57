/**
 * CRC32C (Castagnoli): the checksum of every frame's content and header.
 *
 * Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF. Computed
 * with slicing-by-8 tables, which keeps checksumming a multi-megabyte body cheap next to
 * the network.
 *
 * @module
 */

const POLYNOMIAL = 0x82f63b78;

/** TABLES[k][b]: the CRC of byte b followed by k zero bytes. */
const TABLES = buildTables();

function buildTables() {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 1 ? (crc >>> 1) ^ POLYNOMIAL : crc >>> 1;
    }
    tables[0][byte] = crc >>> 0;
  }
  for (let byte = 0; byte < 256; byte++) {
    for (let k = 1; k < 8; k++) {
      const previous = tables[k - 1][byte];
      tables[k][byte] = ((previous >>> 8) ^ tables[0][previous & 0xff]) >>> 0;
    }
  }
  return tables;
}

/**
 * The CRC32C of `bytes`. Pass the result of a previous call as `previous` to continue a
 * checksum over several pieces (the header CRC covers the prefix and then the header).
 *
 * @param {Uint8Array} bytes
 * @param {number} [previous] a CRC32C returned earlier, to continue from
 * @returns {number} an unsigned 32-bit value
 */
export function crc32c(bytes, previous = 0) {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let crc = ~previous >>> 0;
  let i = 0;
  const length = bytes.length;
  const whole = length - (length % 8);
  while (i < whole) {
    const low = (crc ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    crc =
      t7[low & 0xff] ^
      t6[(low >>> 8) & 0xff] ^
      t5[(low >>> 16) & 0xff] ^
      t4[low >>> 24] ^
      t3[bytes[i + 4]] ^
      t2[bytes[i + 5]] ^
      t1[bytes[i + 6]] ^
      t0[bytes[i + 7]];
    i += 8;
  }
  while (i < length) {
    crc = (crc >>> 8) ^ t0[(crc ^ bytes[i]) & 0xff];
    i++;
  }
  return ~crc >>> 0;
}
