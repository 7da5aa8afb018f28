//! Templates and options templates: their wire form (RFC 3954 §5.2 and §6.1 for v9, RFC 7011
//! §3.4.1 and §3.4.2 for IPFIX) and the checks a template must pass before it is kept.
//!
//! This module only reads template sets into [`TemplateRecord`]s; keeping, refreshing, replacing,
//! expiring and evicting them is the [`crate::Session`]'s job, and turning a template into the
//! steps that decode its records is [`crate::record`]'s.
//!
//! ```text
//! v9 template FlowSet (id 0)         IPFIX template set (id 2)
//! +----------------+--------------+  +----------------+--------------+
//! | template id    | field count  |  | template id    | field count  |  (field count 0: withdrawal)
//! +----------------+--------------+  +-+--------------+--------------+
//! | field type     | field length |  |E| element id   | field length |  (length 65535: variable)
//! +----------------+--------------+  +-+--------------+--------------+
//!                                    | enterprise number (if E)      |
//! v9 options template (id 1)         IPFIX options template set (id 3)
//! | template id | scope length (octets) |  | template id | field count |
//! | option length (octets) | scope fields, then option fields |  | scope field count | fields... |
//! ```

use crate::error::ErrorKind;
use crate::ie;

/// One field specifier of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// The element id (v9 field type), without the enterprise bit.
    pub id: u16,
    /// The Private Enterprise Number of an enterprise-specific IPFIX element (RFC 7011 §3.2).
    pub enterprise: Option<u32>,
    /// Octets in each record; [`ie::VARIABLE_LENGTH`] (IPFIX only) for a variable-length field.
    pub len: u16,
}

impl FieldSpec {
    /// An IANA (non-enterprise) field.
    pub const fn new(id: u16, len: u16) -> FieldSpec {
        FieldSpec {
            id,
            enterprise: None,
            len,
        }
    }
}

/// A template or an options template, as it was on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    /// 256 or more.
    pub id: u16,
    /// Scope fields first (options templates), then the others.
    pub fields: Vec<FieldSpec>,
    /// How many of `fields` are scope fields; 0 for a template, 1 or more for an options template.
    pub scope_fields: usize,
    /// An options template: its records describe the exporter (samplers, timeouts), not flows.
    pub options: bool,
}

impl Template {
    /// A template for flow records.
    pub fn new(id: u16, fields: Vec<FieldSpec>) -> Template {
        Template {
            id,
            fields,
            scope_fields: 0,
            options: false,
        }
    }

    /// An options template whose first `scope_fields` fields are its scope.
    pub fn options(id: u16, scope_fields: usize, fields: Vec<FieldSpec>) -> Template {
        Template {
            id,
            fields,
            scope_fields,
            options: true,
        }
    }

    /// The shortest record: every fixed length, and 1 octet for each variable-length field (an
    /// empty value). Data that remains in a set after the last record and is shorter than this is
    /// padding (RFC 7011 §3.3.1, RFC 3954 §5.3).
    pub fn min_record_len(&self, ipfix: bool) -> usize {
        self.fields
            .iter()
            .map(|f| {
                if ipfix && f.len == ie::VARIABLE_LENGTH {
                    1
                } else {
                    usize::from(f.len)
                }
            })
            .sum()
    }
}

/// What one record of a template set says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateRecord {
    Define(Template),
    /// IPFIX: a template id with field count 0 (RFC 7011 §8.1).
    Withdraw(u16),
    /// IPFIX: template id 2 (all templates) or 3 (all options templates) with field count 0.
    WithdrawAll {
        options: bool,
    },
}

/// The result of reading one template set: each record in order (a refused one with its template
/// id and reason), and the error that stopped the walk early, if one did.
#[derive(Debug, Default)]
pub(crate) struct TemplateSet {
    pub records: Vec<Result<TemplateRecord, (u16, ErrorKind)>>,
    pub stopped: Option<(u16, ErrorKind)>,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn u16(&mut self) -> Result<u16, ErrorKind> {
        match self.data.get(self.pos..self.pos.saturating_add(2)) {
            Some(&[a, b]) => {
                self.pos += 2;
                Ok(u16::from_be_bytes([a, b]))
            }
            _ => Err(self.truncated(2)),
        }
    }

    fn u32(&mut self) -> Result<u32, ErrorKind> {
        match self.data.get(self.pos..self.pos.saturating_add(4)) {
            Some(&[a, b, c, d]) => {
                self.pos += 4;
                Ok(u32::from_be_bytes([a, b, c, d]))
            }
            _ => Err(self.truncated(4)),
        }
    }

    fn truncated(&self, need: usize) -> ErrorKind {
        ErrorKind::Truncated {
            need,
            have: self.left(),
        }
    }

    /// The rest is padding: under 4 octets, or all zero (no template has id 0).
    fn only_padding_left(&self) -> bool {
        self.left() < 4 || self.data[self.pos..].iter().all(|&b| b == 0)
    }
}

/// Reads `n` field specifiers, keeping at most `max` of them (the rest are read past, so that the
/// next template in the set is found, and the template is refused by the caller).
fn fields(
    c: &mut Cursor<'_>,
    n: usize,
    ipfix: bool,
    max: usize,
) -> Result<Vec<FieldSpec>, ErrorKind> {
    // Each specifier is at least 4 octets: refuse a count the set cannot hold before allocating.
    if n.saturating_mul(4) > c.left() {
        return Err(ErrorKind::Truncated {
            need: n.saturating_mul(4),
            have: c.left(),
        });
    }
    let mut out = Vec::with_capacity(n.min(max));
    for _ in 0..n {
        let raw = c.u16()?;
        let len = c.u16()?;
        let (id, enterprise) = if ipfix && raw & ie::ENTERPRISE_BIT != 0 {
            (raw & !ie::ENTERPRISE_BIT, Some(c.u32()?))
        } else {
            (raw, None)
        };
        if out.len() < max {
            out.push(FieldSpec {
                id,
                enterprise,
                len,
            });
        }
    }
    Ok(out)
}

/// The checks every defined template passes (the caller has checked the id).
fn check(t: &Template, n: usize, ipfix: bool, max_fields: usize) -> Result<(), ErrorKind> {
    if n > max_fields {
        return Err(ErrorKind::TooManyFields { n, max: max_fields });
    }
    let min = t.min_record_len(ipfix);
    if min == 0 {
        return Err(ErrorKind::NoFields);
    }
    if min > usize::from(u16::MAX) {
        return Err(ErrorKind::RecordTooLong(min));
    }
    Ok(())
}

/// Reads a v9 template FlowSet (id 0) or options template FlowSet (id 1) body.
pub(crate) fn v9_set(body: &[u8], options: bool, max_fields: usize) -> TemplateSet {
    let mut c = Cursor { data: body, pos: 0 };
    let mut out = TemplateSet::default();
    while !c.only_padding_left() {
        let r = if options {
            v9_options_record(&mut c, max_fields)
        } else {
            v9_template_record(&mut c, max_fields)
        };
        match r {
            Ok(r) => out.records.push(r),
            Err((id, e)) => {
                out.stopped = Some((id, e));
                break;
            }
        }
    }
    out
}

type Step = Result<Result<TemplateRecord, (u16, ErrorKind)>, (u16, ErrorKind)>;

fn v9_template_record(c: &mut Cursor<'_>, max_fields: usize) -> Step {
    let id = c.u16().map_err(|e| (0, e))?;
    let n = usize::from(c.u16().map_err(|e| (id, e))?);
    let fields = fields(c, n, false, max_fields).map_err(|e| (id, e))?;
    let t = Template::new(id, fields);
    Ok(refuse_or_define(t, n, false, max_fields))
}

fn refuse_or_define(
    t: Template,
    n: usize,
    ipfix: bool,
    max_fields: usize,
) -> Result<TemplateRecord, (u16, ErrorKind)> {
    let id = t.id;
    if id < ie::set::FIRST_DATA {
        return Err((id, ErrorKind::TemplateId(id)));
    }
    if n == 0 {
        return Err((id, ErrorKind::NoFields));
    }
    check(&t, n, ipfix, max_fields).map_err(|e| (id, e))?;
    Ok(TemplateRecord::Define(t))
}

fn v9_options_record(c: &mut Cursor<'_>, max_fields: usize) -> Step {
    let id = c.u16().map_err(|e| (0, e))?;
    let scope_len = usize::from(c.u16().map_err(|e| (id, e))?);
    let option_len = usize::from(c.u16().map_err(|e| (id, e))?);
    let total = scope_len + option_len;
    if total > c.left() {
        return Err((
            id,
            ErrorKind::Truncated {
                need: total,
                have: c.left(),
            },
        ));
    }
    if scope_len % 4 != 0 || option_len % 4 != 0 {
        // The lengths still tell where the next template starts: skip this one.
        c.pos += total;
        return Ok(Err((id, ErrorKind::Scope("length not a multiple of 4"))));
    }
    let n = total / 4;
    let fields = fields(c, n, false, max_fields).map_err(|e| (id, e))?;
    if scope_len == 0 {
        return Ok(Err((id, ErrorKind::Scope("no scope field"))));
    }
    let t = Template::options(id, scope_len / 4, fields);
    Ok(refuse_or_define(t, n, false, max_fields))
}

/// Reads an IPFIX template set (id 2) or options template set (id 3) body.
pub(crate) fn ipfix_set(body: &[u8], options: bool, max_fields: usize) -> TemplateSet {
    let mut c = Cursor { data: body, pos: 0 };
    let mut out = TemplateSet::default();
    while !c.only_padding_left() {
        match ipfix_record(&mut c, options, max_fields) {
            Ok(r) => out.records.push(r),
            Err((id, e)) => {
                out.stopped = Some((id, e));
                break;
            }
        }
    }
    out
}

fn ipfix_record(c: &mut Cursor<'_>, options: bool, max_fields: usize) -> Step {
    let id = c.u16().map_err(|e| (0, e))?;
    let n = usize::from(c.u16().map_err(|e| (id, e))?);
    if n == 0 {
        // RFC 7011 §8.1: a withdrawal; the set's own id withdraws every template of that kind.
        let set_id = if options {
            ie::set::IPFIX_OPTIONS_TEMPLATE
        } else {
            ie::set::IPFIX_TEMPLATE
        };
        return Ok(if id == set_id {
            Ok(TemplateRecord::WithdrawAll { options })
        } else if id < ie::set::FIRST_DATA {
            Err((id, ErrorKind::TemplateId(id)))
        } else {
            Ok(TemplateRecord::Withdraw(id))
        });
    }
    let scope = if options {
        usize::from(c.u16().map_err(|e| (id, e))?)
    } else {
        0
    };
    let fields = fields(c, n, true, max_fields).map_err(|e| (id, e))?;
    if options && (scope == 0 || scope > n) {
        return Ok(Err((
            id,
            ErrorKind::Scope("scope field count is 0 or above the field count"),
        )));
    }
    let t = Template {
        id,
        fields,
        scope_fields: scope,
        options,
    };
    Ok(refuse_or_define(t, n, true, max_fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_record_len_counts_variable_fields_as_one_octet() {
        let t = Template::new(
            300,
            vec![
                FieldSpec::new(8, 4),
                FieldSpec::new(315, ie::VARIABLE_LENGTH),
            ],
        );
        assert_eq!(t.min_record_len(true), 5);
        assert_eq!(t.min_record_len(false), 4 + 65535);
    }

    #[test]
    fn ipfix_enterprise_field_reads_its_number() {
        let body = [
            0x01, 0x00, 0x00, 0x02, // id 256, 2 fields
            0x00, 0x08, 0x00, 0x04, // sourceIPv4Address
            0x80, 0x01, 0x00, 0x02, 0x00, 0x00, 0x73, 0x79, // enterprise 29561, element 1
        ];
        let s = ipfix_set(&body, false, 256);
        assert!(s.stopped.is_none());
        let Ok(TemplateRecord::Define(t)) = &s.records[0] else {
            panic!("{:?}", s.records)
        };
        assert_eq!(t.fields[1].enterprise, Some(29561));
        assert_eq!(t.fields[1].id, 1);
    }
}
