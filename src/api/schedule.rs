//! A CompareTask's `schedule`: a five-field cron expression (minute, hour, day of month, month,
//! day of week), evaluated in UTC. One parsed type serves validation and the scheduler, so what
//! validates is exactly what fires.

use jiff::Timestamp;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: croner::Cron,
}

impl Schedule {
    /// Parses `expr`; the error says what is wrong with it.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        if fields != 5 {
            return Err(format!("a schedule has 5 fields (minute hour day-of-month month day-of-week), got {fields}"));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))?;
        if cron.find_next_occurrence(&jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC), false).is_err() {
            return Err(format!("{expr:?} never fires"));
        }
        Ok(Schedule { cron })
    }

    /// The first minute strictly after `after` that the schedule matches (UTC); none when it
    /// never fires again.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let from = after.to_zoned(jiff::tz::TimeZone::UTC);
        self.cron.find_next_occurrence(&from, false).ok().map(|z| z.timestamp())
    }
}
