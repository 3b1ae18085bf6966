//! The accounting rules, one scenario each.

use super::*;
use crate::history::{Change, Record, Status};

const S: i64 = 1000;
const H: i64 = 3600 * S;
/// 2026-11-01T00:00:00Z
const T0: i64 = 20_758 * DAY_MS;

fn state(t: i64, s: Status, cause: &str) -> Record {
    Record::State {
        t,
        change: Change::to(s).because(cause),
    }
}

fn restart(t: i64, cause: &str) -> Record {
    Record::State {
        t,
        change: Change {
            restart: true,
            ..Change::to(Status::Restarting).because(cause)
        },
    }
}

fn start(t: i64, prev: Option<i64>) -> Record {
    Record::Start { t, pid: 1, prev }
}

fn period(from: i64, to: i64) -> Period {
    Period { from, to }
}

#[test]
fn downtime_begins_at_the_first_failed_check_and_ends_when_healthy() {
    let rec = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        state(T0 + H, Status::Failing, "timed out"),
        restart(T0 + H + 90 * S, "3 failed checks"),
        state(T0 + H + 100 * S, Status::Healthy, ""),
        Record::Stop { t: T0 + 2 * H },
    ];
    let r = account(&rec, period(T0, T0 + 2 * H), None);
    assert_eq!(r.down, 100 * S);
    assert_eq!(r.up, 2 * H - 100 * S);
    assert_eq!(r.incidents.len(), 1);
    let i = &r.incidents[0];
    assert_eq!(
        (i.start, i.end, i.downtime),
        (T0 + H, T0 + H + 100 * S, 100 * S)
    );
    assert_eq!(
        (i.cause.as_str(), i.restarts, i.ongoing),
        ("timed out", 1, false)
    );
    assert_eq!(r.restarts.get("3 failed checks"), Some(&1));
    assert_eq!(r.mttr(), Some(100 * S));
    assert_eq!(r.coverage(), Some(100.0));
}

#[test]
fn a_gap_while_the_monitor_did_not_run_is_not_observed() {
    // Killed: the last sign of life is the state file's time in `prev`.
    let rec = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        Record::Heartbeat { t: T0 + H },
        start(T0 + 3 * H, Some(T0 + H + 300 * S)),
        state(T0 + 3 * H, Status::Healthy, ""),
        Record::Stop { t: T0 + 4 * H },
    ];
    let r = account(&rec, period(T0, T0 + 4 * H), None);
    assert_eq!(r.down, 0);
    assert_eq!(r.up, 2 * H + 300 * S);
    assert_eq!(r.not_observed(), 2 * H - 300 * S);
    assert_eq!(r.availability(), Some(100.0));
    assert!(r.incidents.is_empty());
    // Without a state file, the heartbeat is the last sign of life.
    let mut no_prev = rec.clone();
    no_prev[3] = start(T0 + 3 * H, None);
    assert_eq!(account(&no_prev, period(T0, T0 + 4 * H), None).up, 2 * H);
}

#[test]
fn pauses_are_listed_and_neither_up_nor_down() {
    let rec = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        state(T0 + H, Status::Paused, "deploy by ops"),
        state(T0 + 2 * H, Status::Healthy, ""),
        Record::Stop { t: T0 + 3 * H },
    ];
    let r = account(&rec, period(T0, T0 + 3 * H), None);
    assert_eq!((r.up, r.down, r.paused), (2 * H, 0, H));
    assert_eq!(r.availability(), Some(100.0));
    assert_eq!(r.coverage(), Some(100.0));
    assert_eq!(r.pauses.len(), 1);
    assert_eq!(r.pauses[0].by, "deploy by ops");
}

#[test]
fn an_incident_across_midnight_is_one_incident_split_over_two_days() {
    let midnight = T0 + DAY_MS;
    let rec = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        state(
            midnight - 600 * S,
            Status::Down,
            "process exited with status 1",
        ),
        restart(midnight - 590 * S, "process exited with status 1"),
        state(midnight + 300 * S, Status::Healthy, ""),
        Record::Stop { t: midnight + H },
    ];
    let r = account(&rec, period(T0, midnight + H), None);
    assert_eq!(r.incidents.len(), 1);
    assert_eq!(r.incidents[0].downtime, 900 * S);
    assert_eq!(r.days.len(), 2);
    assert_eq!((r.days[0].down, r.days[1].down), (600 * S, 300 * S));
    assert!(r.days[0].availability().unwrap() < 100.0);
}

#[test]
fn an_incident_across_a_monitor_restart_goes_on_without_counting_the_gap() {
    let rec = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        state(T0 + H, Status::Failing, "refused"),
        Record::Stop { t: T0 + H + 60 * S },
        start(T0 + H + 600 * S, None),
        restart(T0 + H + 600 * S, "first start"),
        state(T0 + H + 602 * S, Status::Healthy, ""),
        Record::Stop { t: T0 + 2 * H },
    ];
    let r = account(&rec, period(T0, T0 + 2 * H), None);
    assert_eq!(r.incidents.len(), 1, "{:?}", r.incidents);
    let i = &r.incidents[0];
    assert_eq!(i.downtime, 62 * S);
    assert_eq!(i.not_observed, 540 * S);
    assert_eq!(i.cause, "refused");
    assert_eq!(i.end, T0 + H + 602 * S);
    // Healthy again after the gap: the incident ends at the last down moment.
    let rec2 = [
        rec[0].clone(),
        rec[1].clone(),
        rec[2].clone(),
        rec[3].clone(),
        start(T0 + H + 600 * S, None),
        state(T0 + H + 600 * S, Status::Healthy, ""),
    ];
    let r2 = account(&rec2, period(T0, T0 + 2 * H), None);
    assert_eq!(r2.incidents[0].end, T0 + H + 60 * S);
    assert_eq!(r2.incidents[0].downtime, 60 * S);
}

#[test]
fn an_open_incident_is_cut_at_the_period_end_and_marked_ongoing() {
    let rec = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        state(T0 + H, Status::GivenUp, "refused"),
    ];
    let r = account(&rec, period(T0, T0 + 2 * H), Some(T0 + 3 * H));
    assert_eq!(r.incidents.len(), 1);
    assert!(r.incidents[0].ongoing);
    assert_eq!(r.incidents[0].end, T0 + 2 * H);
    assert_eq!(r.down, H);
    assert_eq!(r.mttr(), None);
    assert_eq!(r.longest().map(|i| i.downtime), Some(H));
}

#[test]
fn a_planned_restart_is_downtime_only_when_it_fails() {
    let planned = |t| Record::State {
        t,
        change: Change {
            planned: true,
            restart: true,
            ..Change::to(Status::Restarting).because("planned restart")
        },
    };
    let ok = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        planned(T0 + H),
        state(T0 + H + 2 * S, Status::Healthy, ""),
        Record::Stop { t: T0 + 2 * H },
    ];
    let r = account(&ok, period(T0, T0 + 2 * H), None);
    assert_eq!((r.down, r.incidents.len()), (0, 0));
    assert_eq!(r.restarts.get("planned restart"), Some(&1));
    let failed = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        planned(T0 + H),
        state(T0 + H + 30 * S, Status::Down, "timed out"),
        state(T0 + H + 60 * S, Status::Healthy, ""),
        Record::Stop { t: T0 + 2 * H },
    ];
    let r = account(&failed, period(T0, T0 + 2 * H), None);
    assert_eq!(r.down, 60 * S);
    assert_eq!(r.incidents[0].cause, "planned restart");
}

#[test]
fn a_period_with_no_data_has_no_availability_and_no_coverage() {
    let r = account(&[], period(T0, T0 + DAY_MS), None);
    assert_eq!(r.availability(), None);
    assert_eq!(r.coverage(), Some(0.0));
    assert_eq!(r.not_observed(), DAY_MS);
    assert_eq!(r.days.len(), 1);
    assert!(r.incidents.is_empty());
    for f in [text(&r, "s"), csv(&r), page(&r, "s")] {
        assert!(!f.is_empty());
    }
    assert_eq!(
        json(&r, "s")["availability_percent"],
        serde_json::Value::Null
    );
}

#[test]
fn a_period_before_the_first_record_is_not_observed() {
    let rec = [
        start(T0 + 10 * DAY_MS, None),
        state(T0 + 10 * DAY_MS, Status::Healthy, ""),
    ];
    let r = account(&rec, period(T0, T0 + 5 * DAY_MS), Some(T0 + 11 * DAY_MS));
    assert_eq!((r.up, r.down), (0, 0));
    assert_eq!(r.availability(), None);
    assert_eq!(r.coverage(), Some(0.0));
}

#[test]
fn partial_day_lines_of_the_same_day_are_added_up() {
    let mut a = crate::history::DaySummary {
        day: T0 / DAY_MS,
        checks: 10,
        failures: 1,
        ..Default::default()
    };
    a.latency.add(5.0);
    let mut b = a.clone();
    b.latency.add(500.0);
    b.memory.add(40.0);
    let rec = [
        Record::Day {
            t: T0 + H,
            summary: Box::new(a),
        },
        Record::Day {
            t: T0 + 2 * H,
            summary: Box::new(b),
        },
    ];
    let r = account(&rec, period(T0, T0 + DAY_MS), None);
    let c = r.days[0].checks.as_ref().unwrap();
    assert_eq!((c.checks, c.failures), (20, 2));
    assert_eq!(c.latency.max_ms, 500.0);
    assert_eq!(c.memory.mean(), Some(40.0));
}

#[test]
fn month_periods_are_whole_utc_months_cut_at_now() {
    let p = Period::of(
        ReportPeriod::Month {
            year: 2026,
            month: 11,
        },
        T0 + 40 * DAY_MS,
    );
    assert_eq!((p.from, p.to), (T0, T0 + 30 * DAY_MS));
    let p = Period::of(
        ReportPeriod::Month {
            year: 2026,
            month: 11,
        },
        T0 + DAY_MS,
    );
    assert_eq!(p.to, T0 + DAY_MS);
}

#[test]
fn server_text_is_escaped_in_the_page_and_quoted_in_csv() {
    let rec = [
        start(T0, None),
        state(
            T0,
            Status::Failing,
            "status \"<img src=x onerror=alert(1)>\", ok",
        ),
        Record::Stop { t: T0 + H },
    ];
    let r = account(&rec, period(T0, T0 + H), None);
    let html = page(&r, "<svc>");
    assert!(!html.contains("<img") && !html.contains("<svc>"), "{html}");
    assert!(html.contains("&lt;img"));
    assert!(csv(&r)
        .lines()
        .nth(1)
        .unwrap()
        .ends_with("\"status \"\"<img src=x onerror=alert(1)>\"\", ok\""));
}

#[test]
fn availabilities_agree_with_the_report_for_each_window() {
    let rec = [
        start(T0, None),
        state(T0, Status::Healthy, ""),
        state(T0 + H, Status::Failing, "timed out"),
        restart(T0 + H + 90 * S, "3 failed checks"),
        state(T0 + H + 100 * S, Status::Healthy, ""),
        state(T0 + 2 * H, Status::Paused, "deploy by ops"),
        state(T0 + 3 * H, Status::Healthy, ""),
        Record::Heartbeat { t: T0 + 4 * H },
    ];
    let alive = Some(T0 + 5 * H);
    let periods: Vec<Period> = (0..6)
        .map(|h| period(T0 + (h - 1) * H, T0 + h * H))
        .chain([period(T0 - 24 * H, T0 + 5 * H), period(T0 + H, T0 + 2 * H)])
        .collect();
    let got = availabilities(&rec, &periods, alive);
    for (p, a) in periods.iter().zip(&got) {
        assert_eq!(*a, account(&rec, *p, alive).availability(), "{p:?}");
    }
    assert_eq!(got[0], None, "before the first record: not observed");
    assert_eq!(got[3], None, "paused all hour: neither up nor down");
    let hour = got[2].unwrap();
    assert!((hour - 100.0 * (H - 100 * S) as f64 / H as f64).abs() < 1e-9);
}
