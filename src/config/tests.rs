use super::interpolate::*;
use super::*;
use std::collections::BTreeMap;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn interpolates_set_default_and_escaped_variables() {
    let e = env(&[("TOKEN", "s3cr\"et"), ("EMPTY", "")]);
    assert_eq!(interpolate("a ${TOKEN} b", &e).unwrap(), "a s3cr\"et b");
    assert_eq!(interpolate("${NOPE:-dflt}", &e).unwrap(), "dflt");
    assert_eq!(interpolate("${EMPTY:-dflt}", &e).unwrap(), "dflt");
    assert_eq!(interpolate("$${TOKEN} $5", &e).unwrap(), "${TOKEN} $5");
    assert_eq!(
        interpolate("${A}${B}", &e).unwrap_err(),
        vec![Unfilled::Missing("A".into()), Unfilled::Missing("B".into())]
    );
    assert_eq!(
        interpolate("x ${TOKEN", &e).unwrap_err(),
        vec![Unfilled::Unclosed]
    );
}

#[test]
fn crontab_lines_mean_what_crontab_users_expect() {
    use chrono::{TimeZone, Utc};
    // 2026-11-27 is a Friday.
    let friday_noon = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    let weekdays_at_nine = parse_cron("0 9 * * 1-5").unwrap();
    let next = weekdays_at_nine
        .find_next_occurrence(&friday_noon, false)
        .unwrap();
    assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap()); // Monday
    let sundays = parse_cron("30 6 * * 0").unwrap();
    let next = sundays.find_next_occurrence(&friday_noon, false).unwrap();
    assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 29, 6, 30, 0).unwrap());
    let sundays_as_7 = parse_cron("30 6 * * 7").unwrap();
    assert_eq!(
        sundays_as_7
            .find_next_occurrence(&friday_noon, false)
            .unwrap(),
        next
    );
    let every_five = parse_cron("*/5 * * * *").unwrap();
    assert_eq!(
        every_five
            .find_next_occurrence(&friday_noon, false)
            .unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 5, 0).unwrap()
    );
    let with_seconds = parse_cron("*/10 * * * * *").unwrap();
    assert_eq!(
        with_seconds
            .find_next_occurrence(&friday_noon, false)
            .unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 10).unwrap()
    );
    assert!(parse_cron("0 9 * *").is_err());
    assert!(parse_cron("0 0 9 * * 1 2026").is_err());
    assert!(parse_cron("61 * * * *").is_err());
}

#[test]
fn secret_never_prints() {
    let s = Secret::new("hunter2-very-secret");
    assert_eq!(format!("{s} {s:?}"), "*** ***");
    assert_eq!(s.hint(), "…cret");
    assert_eq!(Secret::new("short").hint(), "…");
    assert_eq!(
        Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").hint(),
        "whsec_…LaSw"
    );
}
