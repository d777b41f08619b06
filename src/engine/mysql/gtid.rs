//! MariaDB global transaction ids: the GTID and GTID_LIST binary log events (which
//! `mysql_common` leaves undecoded) and the replication position they build, `domain-server-seq`
//! per replication domain (`0-1-42,1-2-7`), as `@@gtid_binlog_pos` and `@slave_connect_state`
//! write it.
//!
//! MySQL's GTIDs (`uuid:1-42`) are a different format, decoded by `mysql_common` itself.

use std::collections::BTreeMap;
use std::fmt;

/// Binary log event type of a MariaDB GTID event (the start of a transaction).
pub const GTID_EVENT: u8 = 162;
/// Binary log event type of a MariaDB GTID_LIST event (the position at a log file's start).
pub const GTID_LIST_EVENT: u8 = 163;

/// `flags2` bit: the event carries a group commit id.
const FL_GROUP_COMMIT_ID: u8 = 2;

/// One MariaDB GTID: replication domain, originating server, sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    /// Replication domain.
    pub domain: u32,
    /// Server that originated the transaction.
    pub server: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// A decoded GTID event: the transaction that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GtidEvent {
    /// The transaction's GTID (the server id comes from the event header).
    pub gtid: Gtid,
    /// Group commit id, when the server wrote one.
    pub commit_id: Option<u64>,
    /// Raw `flags2` (standalone, group commit, transactional, …).
    pub flags: u8,
}

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MariaDB {event} event: {message}")]
pub struct DecodeError {
    event: &'static str,
    message: String,
}

fn take<const N: usize>(data: &[u8], at: usize, event: &'static str) -> Result<[u8; N], DecodeError> {
    data.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| DecodeError { event, message: format!("{} bytes, need {} at offset {at}", data.len(), N) })
}

/// Decodes a GTID event's data (after the common header) with the header's server id.
pub fn decode_gtid(data: &[u8], server_id: u32) -> Result<GtidEvent, DecodeError> {
    let seq = u64::from_le_bytes(take(data, 0, "GTID")?);
    let domain = u32::from_le_bytes(take(data, 8, "GTID")?);
    let [flags] = take::<1>(data, 12, "GTID")?;
    let commit_id =
        if flags & FL_GROUP_COMMIT_ID != 0 { Some(u64::from_le_bytes(take(data, 13, "GTID")?)) } else { None };
    Ok(GtidEvent { gtid: Gtid { domain, server: server_id, seq }, commit_id, flags })
}

/// Decodes a GTID_LIST event's data: the binary log position at that point.
pub fn decode_gtid_list(data: &[u8]) -> Result<GtidPos, DecodeError> {
    let count = u32::from_le_bytes(take(data, 0, "GTID_LIST")?) & 0x0fff_ffff;
    let mut pos = GtidPos::default();
    for i in 0..count as usize {
        let at = 4 + i * 16;
        let domain = u32::from_le_bytes(take(data, at, "GTID_LIST")?);
        let server = u32::from_le_bytes(take(data, at + 4, "GTID_LIST")?);
        let seq = u64::from_le_bytes(take(data, at + 8, "GTID_LIST")?);
        pos.advance(Gtid { domain, server, seq });
    }
    Ok(pos)
}

/// A replication position: the last GTID applied in each domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidPos(BTreeMap<u32, Gtid>);

impl GtidPos {
    /// Records `gtid` as the last one of its domain.
    pub fn advance(&mut self, gtid: Gtid) {
        self.0.insert(gtid.domain, gtid);
    }

    /// Whether `gtid` is at or before this position in its domain (already applied).
    pub fn contains(&self, gtid: &Gtid) -> bool {
        self.0.get(&gtid.domain).is_some_and(|last| gtid.seq <= last.seq)
    }

    /// Whether some transaction at or before `other` comes after this position: true when a
    /// stream resumed here needs what lies before `other` (in a domain this position lacks, or
    /// at a lower sequence number).
    pub fn is_before(&self, other: &GtidPos) -> bool {
        other.0.values().any(|o| self.0.get(&o.domain).is_none_or(|mine| mine.seq < o.seq))
    }

    /// Whether no domain has a position.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.values().map(Gtid::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for GtidPos {
    type Err = DecodeError;

    /// Parses `0-1-42,1-2-7` (empty for no position).
    fn from_str(s: &str) -> Result<GtidPos, DecodeError> {
        let bad =
            |part: &str| DecodeError { event: "GTID position", message: format!("{part:?} is not domain-server-seq") };
        let mut pos = GtidPos::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.splitn(3, '-');
            let (Some(d), Some(sv), Some(sq)) = (it.next(), it.next(), it.next()) else { return Err(bad(part)) };
            let gtid = Gtid {
                domain: d.parse().map_err(|_| bad(part))?,
                server: sv.parse().map_err(|_| bad(part))?,
                seq: sq.parse().map_err(|_| bad(part))?,
            };
            pos.advance(gtid);
        }
        Ok(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_before_another_when_it_misses_some_of_its_transactions() {
        let p = |s: &str| s.parse::<GtidPos>().unwrap();
        assert!(p("0-1-10").is_before(&p("0-1-11")));
        assert!(!p("0-1-11").is_before(&p("0-1-11")));
        assert!(!p("0-1-12,1-1-3").is_before(&p("0-2-11")));
        assert!(p("0-1-12").is_before(&p("0-1-11,1-1-1")));
        assert!(!p("0-1-5").is_before(&p("")));
    }

    #[test]
    fn a_gtid_event_decodes_with_and_without_a_commit_id() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend(3u32.to_le_bytes());
        data.push(1);
        assert_eq!(
            decode_gtid(&data, 7).unwrap(),
            GtidEvent { gtid: Gtid { domain: 3, server: 7, seq: 42 }, commit_id: None, flags: 1 }
        );
        data[12] = FL_GROUP_COMMIT_ID;
        data.extend(99u64.to_le_bytes());
        assert_eq!(decode_gtid(&data, 7).unwrap().commit_id, Some(99));
        assert!(decode_gtid(&data[..10], 7).is_err(), "short data is an error, not a panic");
    }

    #[test]
    fn a_gtid_list_decodes_into_a_position_that_prints_and_parses_back() {
        let mut data = 2u32.to_le_bytes().to_vec();
        for (d, s, q) in [(0u32, 1u32, 42u64), (1, 2, 7)] {
            data.extend(d.to_le_bytes());
            data.extend(s.to_le_bytes());
            data.extend(q.to_le_bytes());
        }
        let pos = decode_gtid_list(&data).unwrap();
        assert_eq!(pos.to_string(), "0-1-42,1-2-7");
        assert_eq!("0-1-42, 1-2-7".parse::<GtidPos>().unwrap(), pos);
        assert!(pos.contains(&Gtid { domain: 0, server: 9, seq: 42 }));
        assert!(!pos.contains(&Gtid { domain: 0, server: 1, seq: 43 }));
        assert!(!pos.contains(&Gtid { domain: 5, server: 1, seq: 1 }));
        assert!("0-1".parse::<GtidPos>().is_err());
        assert!(decode_gtid_list(&data[..20]).is_err());
    }
}
