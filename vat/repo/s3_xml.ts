/**
 * The XML of S3's answers that the S3 transport reads: a ListObjectsV2 page and an
 * error document, parsed with no XML library (the elements vat needs are flat, and a
 * key's text cannot contain "<"), entities and CDATA decoded; and escaping for the
 * one request body vat sends (CreateBucket's location).
 *
 * @module
 */

import { ProtocolError } from "../errors.ts";

export function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** One page of a ListObjectsV2 answer (the format: AWS's ListObjectsV2 reference). */
export function parseListPage(
  xml: string,
  endpoint: string,
): { keys: string[]; nextToken?: string } {
  if (!/<ListBucketResult[\s>]/.test(xml)) {
    throw new ProtocolError(
      `S3 at ${endpoint} answered a listing with something other than a ListBucketResult: ` +
        `"${xml.slice(0, 200)}"`,
    );
  }
  const keys: string[] = [];
  // Keys live in <Contents> elements; a key's text cannot contain "<", so the first
  // closing tag after an opening one is its own.
  for (const contents of _elements(xml, "Contents")) {
    const key = _elements(contents, "Key")[0];
    if (key === undefined) {
      throw new ProtocolError(`S3 at ${endpoint} listed an object without a <Key>`);
    }
    keys.push(_decodeXmlText(key, endpoint));
  }
  const truncated = _elements(xml, "IsTruncated")[0]?.trim() === "true";
  if (!truncated) return { keys };
  const token = _elements(xml, "NextContinuationToken")[0];
  if (!token) {
    throw new ProtocolError(
      `S3 at ${endpoint} said a listing goes on but gave no NextContinuationToken`,
    );
  }
  return { keys, nextToken: _decodeXmlText(token, endpoint) };
}

/** The Code and Message of an S3 error document, when there is one. */
export function parseS3Error(xml: string): { code?: string; message?: string } {
  const decode = (raw: string | undefined) => {
    if (raw === undefined) return undefined;
    try {
      return _decodeXmlText(raw, "").trim() || undefined;
    } catch {
      return raw.trim() || undefined;
    }
  };
  return { code: decode(_elements(xml, "Code")[0]), message: decode(_elements(xml, "Message")[0]) };
}

/** The raw contents of every `<name>` element (with or without attributes) in `xml`. */
function _elements(xml: string, name: string): string[] {
  const found: string[] = [];
  const open = new RegExp(`<${name}(?:\\s[^>]*)?(/)?>`, "g");
  const close = `</${name}>`;
  for (let m = open.exec(xml); m !== null; m = open.exec(xml)) {
    if (m[1]) {
      found.push(""); // <name/>
      continue;
    }
    const start = m.index + m[0].length;
    const end = xml.indexOf(close, start);
    if (end < 0) break;
    found.push(xml.slice(start, end));
    open.lastIndex = end + close.length;
  }
  return found;
}

const XML_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

/** Decodes XML character data: the five named entities, numeric references, CDATA. */
function _decodeXmlText(raw: string, endpoint: string): string {
  return raw.replace(
    /<!\[CDATA\[([\s\S]*?)\]\]>|&(#x[0-9A-Fa-f]+|#[0-9]+|[A-Za-z]+);|[&<]/g,
    (whole, cdata: string | undefined, entity: string | undefined) => {
      if (cdata !== undefined) return cdata;
      if (entity !== undefined) {
        if (entity in XML_ENTITIES) return XML_ENTITIES[entity];
        if (entity.startsWith("#")) {
          const code = entity[1] === "x"
            ? parseInt(entity.slice(2), 16)
            : parseInt(entity.slice(1), 10);
          if (code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff)) {
            return String.fromCodePoint(code);
          }
        }
      }
      throw new ProtocolError(`S3 at ${endpoint} sent malformed XML text near "${whole}"`);
    },
  );
}
