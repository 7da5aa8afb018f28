//! Samples (`sample_record`, sflow_version_5.txt §5): flow samples (one sampled packet each) and
//! counter samples (periodic interface statistics), in their compact and expanded forms. Each sample
//! holds a list of records, decoded in [`crate::flow`] and [`crate::counters`].
//!
//! ```text
//! flow_sample                        flow_sample_expanded
//!   unsigned int sequence_number;      unsigned int sequence_number;
//!   sflow_data_source source_id;       unsigned int source_id_type; unsigned int source_id_index;
//!   unsigned int sampling_rate;        unsigned int sampling_rate;
//!   unsigned int sample_pool;          unsigned int sample_pool;
//!   unsigned int drops;                unsigned int drops;
//!   interface input;                   unsigned int input_format; unsigned int input_value;
//!   interface output;                  unsigned int output_format; unsigned int output_value;
//!   flow_record flow_records<>;        flow_record flow_records<>;
//!
//! counters_sample                    counters_sample_expanded
//!   unsigned int sequence_number;      unsigned int sequence_number;
//!   sflow_data_source source_id;       unsigned int source_id_type; unsigned int source_id_index;
//!   counter_record counters<>;         counter_record counters<>;
//! ```
//!
//! The compact `sflow_data_source` packs the type in its top 8 bits and the index in its low 24;
//! the compact `interface` packs a format in its top 2 bits and a value in its low 30.

use bytes::Bytes;

use crate::counters::{self, CounterRecord};
use crate::error::{DecodeError, Place};
use crate::flow::{self, FlowRecord, small};
use crate::formats::sample as fmt;
use crate::xdr::{Fields, Reader};

/// One sample of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    Flow(FlowSample),
    Counters(CounterSample),
    /// A sample this crate does not decode, skipped by its length. `format` is the whole wire word
    /// (`enterprise << 12 | format`); `data` its body, padding excluded.
    Unknown {
        format: u32,
        data: Bytes,
    },
}

impl Sample {
    /// The data format word this sample has on the wire.
    pub fn format(&self) -> u32 {
        match self {
            Sample::Flow(s) if s.expanded => fmt::FLOW_EXPANDED,
            Sample::Flow(_) => fmt::FLOW,
            Sample::Counters(s) if s.expanded => fmt::COUNTERS_EXPANDED,
            Sample::Counters(_) => fmt::COUNTERS,
            Sample::Unknown { format, .. } => *format,
        }
    }
}

/// A flow sample: one sampled packet, described by its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowSample {
    /// Whether it came as (and encodes to) `flow_sample_expanded` rather than `flow_sample`.
    pub expanded: bool,
    pub sequence: u32,
    /// 0 = ifIndex, 1 = smonVlanDataSource, 2 = entPhysicalEntry. At most 255 in the compact form.
    pub source_id_type: u32,
    /// At most `0xff_ffff` in the compact form.
    pub source_id_index: u32,
    /// One packet in `sampling_rate` was sampled: the scale factor for traffic estimates.
    pub sampling_rate: u32,
    /// Packets that could have been sampled (skipped + sampled), to check the rate.
    pub sample_pool: u32,
    /// Samples the agent dropped for lack of resources.
    pub drops: u32,
    /// Compact `interface`: format in the top 2 bits (0 = ifIndex, 1 = discarded with the reason
    /// as value, 2 = multiple outputs), value in the low 30. The expanded form's format and value
    /// are folded into the same shape; see the crate's known limitations.
    pub input: u32,
    pub output: u32,
    pub records: Vec<FlowRecord>,
}

/// A counter sample: the statistics of one data source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSample {
    /// Whether it came as (and encodes to) `counters_sample_expanded` rather than `counters_sample`.
    pub expanded: bool,
    pub sequence: u32,
    pub source_id_type: u32,
    pub source_id_index: u32,
    pub records: Vec<CounterRecord>,
}

/// The largest value of the compact `interface`'s 30-bit field.
pub const INTERFACE_VALUE_MAX: u32 = 0x3fff_ffff;

/// Folds an expanded interface (format, value) into the compact `format << 30 | value`, saturating
/// the parts that do not fit.
pub fn fold_interface(format: u32, value: u32) -> u32 {
    (format.min(3) << 30) | value.min(INTERFACE_VALUE_MAX)
}

/// Splits a compact interface into its expanded (format, value).
pub fn unfold_interface(interface: u32) -> (u32, u32) {
    (interface >> 30, interface & INTERFACE_VALUE_MAX)
}

/// The smallest record: its format and length words.
const MIN_RECORD: usize = 8;

/// Decodes the body of sample number `index` (0-based) into `out`; `r` is bounded to the sample.
/// The sample is pushed with its header fields first, then its records are decoded in place: no
/// sample or record is built on the stack and copied.
#[inline(always)]
pub(crate) fn decode_into(
    index: usize,
    format: u32,
    r: &mut Reader<'_>,
    out: &mut Vec<Sample>,
) -> Result<(), DecodeError> {
    let at = Place::Sample(index, Some(format));
    match format {
        fmt::FLOW | fmt::FLOW_EXPANDED => {
            let expanded = format == fmt::FLOW_EXPANDED;
            let Some(mut f) = (if expanded {
                r.block::<44>()
            } else {
                r.block::<32>()
            }) else {
                return Err(at.error(r.failure()));
            };
            // The record count (the last word) first: the records' vector is allocated before the
            // other fields are read, so that they go from registers straight into the sample.
            let n = r.fits(f.last_u32(), MIN_RECORD, "flow records");
            if let Some(k) = r.error() {
                return Err(at.error(k));
            }
            let records = Vec::with_capacity(small(n));
            let sequence = f.u32();
            let (source_id_type, source_id_index) = source_id(&mut f, expanded);
            let sampling_rate = f.u32();
            let sample_pool = f.u32();
            let drops = f.u32();
            let (input, output) = if expanded {
                let input = fold_interface(f.u32(), f.u32());
                (input, fold_interface(f.u32(), f.u32()))
            } else {
                (f.u32(), f.u32())
            };
            out.push(Sample::Flow(FlowSample {
                expanded,
                sequence,
                source_id_type,
                source_id_index,
                sampling_rate,
                sample_pool,
                drops,
                input,
                output,
                records,
            }));
            if let Some(Sample::Flow(s)) = out.last_mut() {
                decode_records(r, index, format, n, &mut s.records, flow::decode_into)?;
            }
        }
        fmt::COUNTERS | fmt::COUNTERS_EXPANDED => {
            let expanded = format == fmt::COUNTERS_EXPANDED;
            let Some(mut f) = (if expanded {
                r.block::<16>()
            } else {
                r.block::<12>()
            }) else {
                return Err(at.error(r.failure()));
            };
            let n = r.fits(f.last_u32(), MIN_RECORD, "counter records");
            if let Some(k) = r.error() {
                return Err(at.error(k));
            }
            let records = Vec::with_capacity(small(n));
            let sequence = f.u32();
            let (source_id_type, source_id_index) = source_id(&mut f, expanded);
            out.push(Sample::Counters(CounterSample {
                expanded,
                sequence,
                source_id_type,
                source_id_index,
                records,
            }));
            if let Some(Sample::Counters(s)) = out.last_mut() {
                decode_records(r, index, format, n, &mut s.records, counters::decode_into)?;
            }
        }
        _ => out.push(Sample::Unknown {
            format,
            data: r.rest(),
        }),
    }
    Ok(())
}

/// The compact `sflow_data_source` (type in the top 8 bits, index in the low 24), or the expanded
/// type and index words.
#[inline(always)]
fn source_id(f: &mut Fields<'_>, expanded: bool) -> (u32, u32) {
    if expanded {
        (f.u32(), f.u32())
    } else {
        let id = f.u32();
        (id >> 24, id & 0x00ff_ffff)
    }
}

/// Reads the `n` records of a sample into `out`: for each, its format, its length, then its body
/// with `decode_body`; errors are placed at the record.
#[inline(always)]
fn decode_records<T>(
    r: &mut Reader<'_>,
    sample: usize,
    sample_format: u32,
    n: u32,
    out: &mut Vec<T>,
    decode_body: impl Fn(u32, &mut Reader<'_>, &mut Vec<T>),
) -> Result<(), DecodeError> {
    for i in 0..n {
        let at = |format| Place::Record {
            sample,
            sample_format,
            record: usize::try_from(i).unwrap_or(usize::MAX),
            format,
        };
        let Some(mut f) = r.block::<8>() else {
            return Err(at(None).error(r.failure()));
        };
        let (format, len) = (f.u32(), f.u32());
        let mut body = r.sub(len, "record");
        if let Some(k) = r.error() {
            return Err(at(Some(format)).error(k));
        }
        decode_body(format, &mut body, out);
        if let Some(k) = body.error() {
            return Err(at(Some(format)).error(k));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_fold_and_unfold() {
        assert_eq!(fold_interface(0, 17), 17);
        assert_eq!(fold_interface(1, 258), 0x4000_0102);
        assert_eq!(fold_interface(2, 3), 0x8000_0003);
        assert_eq!(unfold_interface(0x8000_0003), (2, 3));
        // What does not fit saturates, part by part.
        assert_eq!(fold_interface(0, u32::MAX), INTERFACE_VALUE_MAX);
        assert_eq!(fold_interface(9, 1), 0xc000_0001);
        for v in [0, 1, 0x3fff_ffff, 0x4000_0000, 0xffff_ffff] {
            let (f, x) = unfold_interface(v);
            assert_eq!(fold_interface(f, x), v);
        }
    }
}
