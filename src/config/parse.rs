//! Pure parsers for setting values and the env file: durations, booleans,
//! comma-separated lists, shell-like word splitting and dotenv syntax.
//!
//! Each takes a `&str` and returns a value or a short description of what is
//! allowed / what went wrong; the caller (`config::resolve`) adds the setting
//! name and the value to make the user-facing message. Nothing here reads the
//! environment or files, runs a shell, expands variables or globs.

use std::fmt;
use std::time::Duration;

/// Why a value did not parse: the text says what is allowed or what is wrong
/// (`expected seconds like ...`, `unclosed double quote`), never the value
/// itself, so a caller can decide whether the value may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// What every duration setting accepts, for messages.
pub const DURATION_EXPECTED: &str = "expected seconds like `30`, `0.5` or `500ms`";

/// Parses a duration: seconds as a decimal (`30`, `0.5`) or a decimal with a
/// unit `ms`, `s`, `m`, `h` (`500ms`, `2m`, `1.5h`).
///
/// NOTE: the number is parsed by hand, digit by digit, rather than through
/// `f64`: that keeps `0.1` exact, and makes `inf`, `NaN`, `1e3`, signs and
/// overflow plain errors instead of special cases to remember.
/// Fractions of a nanosecond are dropped.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let err = || ParseError(DURATION_EXPECTED.to_string());
    let text = text.trim();
    let (number, nanos_per_unit): (&str, u128) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1_000_000)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60 * 1_000_000_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600 * 1_000_000_000)
    } else {
        (text, 1_000_000_000)
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty())
        || !all_digits(whole)
        || !all_digits(fraction)
        || (number.contains('.') && fraction.is_empty())
    {
        return Err(err());
    }
    let too_large = || ParseError("too large; expected at most a few years".to_string());
    let mut nanos: u128 = 0;
    for b in whole.bytes() {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(b - b'0')))
            .ok_or_else(too_large)?;
    }
    nanos = nanos.checked_mul(nanos_per_unit).ok_or_else(too_large)?;
    // 20 fraction digits are finer than a nanosecond even for hours; more
    // would only risk overflowing the u128 below.
    let fraction = &fraction[..fraction.len().min(20)];
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| err())?;
        let scale = 10u128.pow(fraction.len() as u32);
        nanos = nanos
            .checked_add(digits * nanos_per_unit / scale)
            .ok_or_else(too_large)?;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    // Duration::new cannot overflow here: nanos % 1e9 < 1e9.
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Writes a duration the way [`parse_duration`] reads it, in seconds:
/// `30`, `0.5`, `0.000001`.
pub fn format_duration(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        nanos => {
            let fraction = format!("{nanos:09}");
            format!("{}.{}", d.as_secs(), fraction.trim_end_matches('0'))
        }
    }
}

/// What every boolean setting accepts, for messages.
pub const BOOL_EXPECTED: &str = "expected true/false, yes/no, on/off or 1/0";

/// Parses a boolean: `true/false/yes/no/on/off/1/0`, case-insensitive.
pub fn parse_bool(text: &str) -> Result<bool, ParseError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ParseError(BOOL_EXPECTED.to_string())),
    }
}

/// Splits a comma-separated list: items trimmed, empty items dropped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits a command line into words the way a POSIX shell splits them, and
/// does nothing else a shell does.
///
/// Whitespace separates words; `'...'` is literal; inside `"..."` a backslash
/// escapes only `"`, `\`, `$`, `` ` `` and a newline (which is then removed)
/// and is kept literally before anything else; outside quotes a backslash
/// escapes the next character (a backslash-newline is removed). `""` is an
/// empty word. No variable expansion, no globbing, no operators: `|` or `>`
/// are ordinary words, because the result is exec'd, never given to a shell.
/// A blank text gives no words.
pub fn split_words(text: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word can be empty (`''`), so "have we started one" is its own flag.
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(ParseError("unclosed single quote".to_string())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('\n') => {}
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(ParseError("unclosed double quote".to_string())),
                        },
                        Some(c) => word.push(c),
                        None => return Err(ParseError("unclosed double quote".to_string())),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(ParseError("trailing backslash".to_string())),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Quotes words so that [`split_words`] gives them back: plain words stay as
/// they are, others are single-quoted (a `'` inside becomes `'\''`).
pub fn join_words(words: &[String]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%^".contains(c) || !c.is_ascii())
            && !w.chars().any(char::is_whitespace)
    };
    words
        .iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Is `key` a key an env file can hold unquoted, as python-dotenv reads
/// it: one or more characters, none of them `=`, `#` or a blank
/// (`[^=#\s]+`)? `spring.datasource.url` and `my-key` are keys.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && !key.contains(['=', '#']) && !key.chars().any(char::is_whitespace)
}

/// One `KEY=value` (or bare `KEY`) of an env file, its value expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    /// `None` for a bare `KEY` (no `=`): python-dotenv's "no value".
    pub value: Option<String>,
    /// 1-based line where the statement starts.
    pub line: usize,
}

/// A statement that could not be parsed; `key` is its key when one was read
/// before the problem (the caller decides: a setting's line is an error,
/// any other line a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvProblem {
    pub line: usize,
    pub key: Option<String>,
    pub message: String,
}

/// What [`parse_env_file`] found: the entries in file order (a later
/// duplicate wins when the caller looks up from the end) and the statements
/// it had to skip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvFile {
    pub entries: Vec<EnvEntry>,
    pub problems: Vec<EnvProblem>,
}

/// Parses an env file the way python-dotenv reads it.
///
/// - a leading UTF-8 BOM is skipped; lines end at `\n` or `\r\n`;
/// - blank lines and `#` comment lines; an optional `export ` prefix;
/// - a key is `[^=#\s]+` or `'...'`; spaces around `=`; a bare `KEY`
///   (optionally followed by a `# comment`) has no value;
/// - `'...'`: literal but for `\\` and `\'`; `"..."`: the escapes `\\ \' \"
///   \a \b \f \n \r \t \v` (any other backslash is kept); quoted values may
///   span lines; after the closing quote only blanks or a `# comment`;
/// - an unquoted value ends at a `#` that follows a blank and is trimmed;
///   `a#b` keeps its `#`;
/// - in unquoted and double-quoted values `${VAR}` and `${VAR:-default}`
///   are replaced by `environment(VAR)`, else the value of an earlier line,
///   else the default (else nothing). Not in single-quoted values (there
///   python-dotenv expands too; bash and docker compose do not, and single
///   quotes are then the one way to write a literal `${`).
///
/// A statement that cannot be parsed (no `=` after the key, an unclosed
/// quote, text after a closing quote) is skipped and reported with its line;
/// parsing goes on at the next line, as python-dotenv does.
pub fn parse_env_file(text: &str, environment: impl Fn(&str) -> Option<String>) -> EnvFile {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut file = EnvFile::default();
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i];
        i += 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let statement = match trimmed.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => trimmed,
        };
        let problem = |key: Option<&str>, message: String| EnvProblem {
            line: number,
            key: key.map(str::to_string),
            message,
        };
        let Some((key, after_key)) = read_key(statement) else {
            file.problems
                .push(problem(None, "expected KEY=value".to_string()));
            continue;
        };
        let after_key = after_key.trim_start_matches([' ', '\t']);
        let Some(after) = after_key.strip_prefix('=') else {
            // A bare key, maybe with a comment; anything else is not a statement.
            if after_key.is_empty() || after_key.starts_with('#') {
                file.entries.push(EnvEntry {
                    key: key.to_string(),
                    value: None,
                    line: number,
                });
            } else {
                file.problems
                    .push(problem(Some(key), "expected KEY=value".to_string()));
            }
            continue;
        };
        let value_text = after.trim_start_matches([' ', '\t']);
        let quote = value_text
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"');
        let Some(quote) = quote else {
            let value = expand(&unquoted_value(after), &file.entries, &environment);
            file.entries.push(EnvEntry {
                key: key.to_string(),
                value: Some(value),
                line: number,
            });
            continue;
        };
        // A quoted value may run over several lines: gather text until the
        // closing quote, joining lines with the '\n' they were split at.
        let mut body = value_text[1..].to_string();
        let mut end = i;
        let (value, rest) = loop {
            match close_quote(&body, quote) {
                Some(found) => break Some(found),
                None if end < lines.len() => {
                    body.push('\n');
                    body.push_str(lines[end]);
                    end += 1;
                }
                None => break None,
            }
        }
        .map_or((None, ""), |(v, r)| (Some(v), r));
        let Some(value) = value else {
            // Unclosed: only this line is lost; go on with the next one.
            let kind = if quote == '\'' { "single" } else { "double" };
            file.problems
                .push(problem(Some(key), format!("unclosed {kind} quote")));
            continue;
        };
        i = end;
        let rest = rest.trim();
        if rest.is_empty() || rest.starts_with('#') {
            let value = match quote {
                '"' => expand(&value, &file.entries, &environment),
                _ => value,
            };
            file.entries.push(EnvEntry {
                key: key.to_string(),
                value: Some(value),
                line: number,
            });
        } else {
            file.problems.push(problem(
                Some(key),
                format!("unexpected text after the closing quote of {key}"),
            ));
        }
    }
    file
}

/// Reads the key at the start of `statement`: `'quoted'` or `[^=#\s]+`.
/// Returns it and the text after it.
fn read_key(statement: &str) -> Option<(&str, &str)> {
    if let Some(quoted) = statement.strip_prefix('\'') {
        let end = quoted.find('\'')?;
        let key = &quoted[..end];
        return (!key.is_empty()).then(|| (key, &quoted[end + 1..]));
    }
    let end = statement
        .find(|c: char| c == '=' || c == '#' || c.is_whitespace())
        .unwrap_or(statement.len());
    (end > 0).then(|| (&statement[..end], &statement[end..]))
}

/// Replaces `${NAME}` and `${NAME:-default}` in `value`: the environment
/// first, then the last earlier entry of that name (a bare key gives
/// nothing), then the default. Text that is not such a reference (`$X`,
/// `${A:B}`, an unclosed `${`) stays as it is.
fn expand(
    value: &str,
    earlier: &[EnvEntry],
    environment: &impl Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_end = after.find(['}', ':']).unwrap_or(after.len());
        let name = &after[..name_end];
        let tail = &after[name_end..];
        let (default, consumed) = if tail.starts_with('}') {
            (None, name_end + 1)
        } else if let Some(d) = tail.strip_prefix(":-") {
            match d.find('}') {
                Some(d_end) => (Some(&d[..d_end]), name_end + 2 + d_end + 1),
                None => (None, 0),
            }
        } else {
            (None, 0)
        };
        if consumed == 0 {
            // Not a reference: keep the `$` and look again after it.
            out.push('$');
            rest = &rest[start + 1..];
            continue;
        }
        let found = environment(name).or_else(|| {
            earlier
                .iter()
                .rev()
                .find(|e| e.key == name)
                .map(|e| e.value.clone().unwrap_or_default())
        });
        out.push_str(&found.unwrap_or_else(|| default.unwrap_or_default().to_string()));
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// The value of an unquoted `KEY=value`: up to an inline comment, trimmed.
fn unquoted_value(after_equals: &str) -> String {
    // `#` starts a comment only after a blank, so `a#b` and `#x` are values.
    let mut end = after_equals.len();
    let mut previous_blank = false;
    for (index, c) in after_equals.char_indices() {
        if c == '#' && previous_blank {
            end = index;
            break;
        }
        previous_blank = c == ' ' || c == '\t';
    }
    after_equals[..end].trim().to_string()
}

/// Finds the closing `quote` in `body` (the text after the opening quote):
/// returns the unescaped value and the text after the closing quote.
fn close_quote(body: &str, quote: char) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((index, c)) = chars.next() {
        if c == quote {
            return Some((value, &body[index + 1..]));
        }
        if c == '\\' {
            let decoded = match (quote, chars.clone().next().map(|(_, c)| c)) {
                (_, Some(e @ ('\\' | '\''))) => Some(e),
                ('"', Some('"')) => Some('"'),
                ('"', Some('a')) => Some('\u{7}'),
                ('"', Some('b')) => Some('\u{8}'),
                ('"', Some('f')) => Some('\u{c}'),
                ('"', Some('n')) => Some('\n'),
                ('"', Some('r')) => Some('\r'),
                ('"', Some('t')) => Some('\t'),
                ('"', Some('v')) => Some('\u{b}'),
                _ => None,
            };
            if let Some(decoded) = decoded {
                chars.next();
                value.push(decoded);
                continue;
            }
        }
        value.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn duration_accepts_seconds_and_units() {
        let table: &[(&str, Duration)] = &[
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("0.5", Duration::from_millis(500)),
            (".5", Duration::from_millis(500)),
            ("0.1", Duration::from_millis(100)),
            ("500ms", Duration::from_millis(500)),
            ("1.5ms", Duration::from_micros(1500)),
            ("2s", Duration::from_secs(2)),
            ("2m", Duration::from_secs(120)),
            ("1.5h", Duration::from_secs(5400)),
            (" 30 ", Duration::from_secs(30)),
            ("007", Duration::from_secs(7)),
            ("0.0000000001", Duration::ZERO),
            ("1.00000000000000000000000000001", Duration::from_secs(1)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(*want), "{text:?}");
        }
    }

    #[test]
    fn duration_rejects_negatives_nan_inf_garbage_overflow() {
        for text in [
            "",
            " ",
            "-1",
            "+1",
            "-0.5",
            "NaN",
            "nan",
            "inf",
            "infinity",
            "1e3",
            "5x",
            "s",
            "ms",
            ".",
            "1.",
            "1..2",
            "1.2.3",
            "1 s",
            "2M",
            "2H",
            "30sec",
            "0x10",
            "½",
            "١",
            "99999999999999999999999999999999999999999",
            "18446744073709551616", // u64::MAX + 1 seconds
            "5124095576030432h",    // fits u128 nanos? no: past u64 seconds
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should fail");
        }
        assert_eq!(
            parse_duration("5x").unwrap_err().to_string(),
            DURATION_EXPECTED
        );
    }

    #[test]
    fn duration_largest_whole_seconds_fit() {
        assert_eq!(
            parse_duration("18446744073709551615"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn format_duration_round_trips() {
        let table = [
            (Duration::from_secs(30), "30"),
            (Duration::ZERO, "0"),
            (Duration::from_millis(500), "0.5"),
            (Duration::from_millis(1250), "1.25"),
            (Duration::from_nanos(1), "0.000000001"),
        ];
        for (d, want) in table {
            assert_eq!(format_duration(d), want);
            assert_eq!(parse_duration(want), Ok(d));
        }
    }

    #[test]
    fn bool_accepts_the_six_spellings_case_insensitive() {
        let table = [
            ("true", true),
            ("TRUE", true),
            ("Yes", true),
            ("on", true),
            ("1", true),
            ("false", false),
            ("No", false),
            ("OFF", false),
            ("0", false),
            (" yes ", true),
        ];
        for (text, want) in table {
            assert_eq!(parse_bool(text), Ok(want), "{text:?}");
        }
        for text in ["", "y", "n", "2", "enabled", "t", "-1"] {
            assert!(parse_bool(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn list_is_trimmed_and_drops_empties() {
        let table: &[(&str, &[&str])] = &[
            ("a@x.org", &["a@x.org"]),
            ("a, b ,c", &["a", "b", "c"]),
            ("a,,b,", &["a", "b"]),
            (" , ", &[]),
            ("", &[]),
        ];
        for (text, want) in table {
            assert_eq!(parse_list(text), words(want), "{text:?}");
        }
    }

    #[test]
    fn split_words_follows_shell_quoting() {
        let table: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   \t\n ", &[]),
            ("python app.py", &["python", "app.py"]),
            ("  a   b  ", &["a", "b"]),
            ("a\tb\nc", &["a", "b", "c"]),
            ("'a b' c", &["a b", "c"]),
            ("'a \\n $X \"q\"'", &["a \\n $X \"q\""]),
            ("\"a b\"", &["a b"]),
            (r#""say \"hi\"""#, &[r#"say "hi""#]),
            (r#""a\\b""#, &[r"a\b"]),
            (r#""\$HOME""#, &["$HOME"]),
            ("\"\\`x\\`\"", &["`x`"]),
            ("\"a\\\nb\"", &["ab"]),
            (r#""a\nb""#, &[r"a\nb"]),
            (r"a\ b", &["a b"]),
            (r"a\\b", &[r"a\b"]),
            ("a\\\nb", &["ab"]),
            (r"\'", &["'"]),
            ("''", &[""]),
            ("a '' b", &["a", "", "b"]),
            ("\"\"", &[""]),
            ("ab'c d'\"e\"f", &["abc def"]),
            ("$HOME *.py", &["$HOME", "*.py"]),
            ("a | b > c", &["a", "|", "b", ">", "c"]),
            ("sh -c 'echo \"$1\"' x", &["sh", "-c", "echo \"$1\"", "x"]),
        ];
        for (text, want) in table {
            assert_eq!(split_words(text), Ok(words(want)), "{text:?}");
        }
    }

    #[test]
    fn split_words_rejects_unclosed_quotes_and_trailing_backslash() {
        let table = [
            ("'abc", "unclosed single quote"),
            ("a \"bc", "unclosed double quote"),
            ("\"a\\\"", "unclosed double quote"),
            ("\"a\\", "unclosed double quote"),
            ("abc\\", "trailing backslash"),
        ];
        for (text, want) in table {
            assert_eq!(
                split_words(text),
                Err(ParseError(want.to_string())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn join_words_round_trips_through_split_words() {
        let cases: &[&[&str]] = &[
            &["python", "app.py", "--port=8000"],
            &["sh", "-c", "echo 'hi there' \"$X\""],
            &["a b", "", "it's", "back\\slash", "new\nline", "naïve"],
        ];
        for case in cases {
            let case = words(case);
            assert_eq!(split_words(&join_words(&case)), Ok(case.clone()));
        }
        assert_eq!(join_words(&words(&["python", "app.py"])), "python app.py");
        assert_eq!(join_words(&words(&["a b"])), "'a b'");
    }

    #[test]
    fn env_file_parses_dotenv_syntax() {
        let text = "\
# a comment
   # an indented comment

PLAIN=value
SPACED = spaced value  
export EXPORTED=yes
export\tTABBED=1
EMPTY=
INLINE=value # comment
HASH=a#b
HASH_START=#x
COMMENT_ONLY= # nothing
SINGLE='lit \\n $X # not a comment'
DOUBLE=\"a\\nb \\\"q\\\" \\\\ \\t\"
QUOTED_COMMENT='v'  # trailing comment
MULTI=\"line1
line2\"
CRLF=crlf\r
URL=https://user:p@ss@host/x?a=1#frag
exported=lower
_UNDER=1
PLAIN=second
";
        let want: &[(&str, &str)] = &[
            ("PLAIN", "value"),
            ("SPACED", "spaced value"),
            ("EXPORTED", "yes"),
            ("TABBED", "1"),
            ("EMPTY", ""),
            ("INLINE", "value"),
            ("HASH", "a#b"),
            ("HASH_START", "#x"),
            ("COMMENT_ONLY", ""),
            ("SINGLE", "lit \\n $X # not a comment"),
            ("DOUBLE", "a\nb \"q\" \\ \t"), // `\t` is a tab since issue 8 (python-dotenv)
            ("QUOTED_COMMENT", "v"),
            ("MULTI", "line1\nline2"),
            ("CRLF", "crlf"),
            ("URL", "https://user:p@ss@host/x?a=1#frag"),
            ("exported", "lower"),
            ("_UNDER", "1"),
            ("PLAIN", "second"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs(text), Ok(want));
    }

    /// The pairs of a file with no problems (bare keys as ""), or its problems
    /// as `line N: message`.
    fn pairs(text: &str) -> Result<Vec<(String, String)>, Vec<String>> {
        pairs_with(text, &[])
    }

    fn pairs_with(text: &str, env: &[(&str, &str)]) -> Result<Vec<(String, String)>, Vec<String>> {
        let file = parse_env_file(text, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        });
        if !file.problems.is_empty() {
            return Err(file
                .problems
                .iter()
                .map(|p| format!("line {}: {}", p.line, p.message))
                .collect());
        }
        Ok(file
            .entries
            .into_iter()
            .map(|e| (e.key, e.value.unwrap_or_default()))
            .collect())
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_file_export_is_a_key_when_not_a_prefix() {
        assert_eq!(
            pairs("export=1\nexportX=2"),
            Ok(owned(&[("export", "1"), ("exportX", "2")]))
        );
    }

    #[test]
    fn env_file_problems_carry_line_numbers_and_keys_and_all_are_reported() {
        // Changed by issue 8: `1BAD`, `KEY-DASH` are keys now (python-dotenv).
        let text = "GOOD=1\njust words\n1BAD=x\nKEY-DASH=y\n=novalue\nQ='a' trailing\n";
        let file = parse_env_file(text, |_| None);
        assert_eq!(
            file.problems,
            vec![
                EnvProblem {
                    line: 2,
                    key: Some("just".to_string()),
                    message: "expected KEY=value".to_string()
                },
                EnvProblem {
                    line: 5,
                    key: None,
                    message: "expected KEY=value".to_string()
                },
                EnvProblem {
                    line: 6,
                    key: Some("Q".to_string()),
                    message: "unexpected text after the closing quote of Q".to_string()
                },
            ]
        );
        let keys: Vec<&str> = file.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["GOOD", "1BAD", "KEY-DASH"]);
    }

    #[test]
    fn env_file_unclosed_quote_loses_only_its_line() {
        // Changed by issue 8: parsing goes on at the next line, as in python-dotenv.
        assert_eq!(
            pairs("A=1\nB=\"open\nC=2\n"),
            Err(vec!["line 2: unclosed double quote".to_string()])
        );
        let file = parse_env_file("A=1\nB=\"open\nC=2\n", |_| None);
        let keys: Vec<&str> = file.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["A", "C"]);
        assert_eq!(
            pairs("A='open"),
            Err(vec!["line 1: unclosed single quote".to_string()])
        );
    }

    #[test]
    fn env_file_reads_what_python_dotenv_reads() {
        let text = "\u{feff}DEBUG\n\
                    spring.datasource.url=jdbc:x\n\
                    my-key = 1\n\
                    'quoted key'=q\n\
                    S='it\\'s \\\\ \\n'\n\
                    D=\"\\t\\r\\a\\' \\x\"\n\
                    export BARE # a comment\n\
                    V='a'#c\n";
        assert_eq!(
            pairs(text),
            Ok(owned(&[
                ("DEBUG", ""),
                ("spring.datasource.url", "jdbc:x"),
                ("my-key", "1"),
                ("quoted key", "q"),
                ("S", "it's \\ \\n"),
                ("D", "\t\r\u{7}' \\x"),
                ("BARE", ""),
                ("V", "a"),
            ]))
        );
        let file = parse_env_file("A\nB=\n", |_| None);
        assert_eq!(file.entries[0].value, None);
        assert_eq!(file.entries[1].value, Some(String::new()));
    }

    #[test]
    fn env_file_expansion() {
        let text = "A=1\n\
                    B=${A}-${E}-${NONE}-${NONE:-dflt}-${A:-dflt}\n\
                    C=\"${B}\"\n\
                    D='${A}'\n\
                    F=$A ${A:B} ${ ${A\n\
                    BARE\n\
                    G=${BARE:-x}${E:-y}\n\
                    H=${LATE}\n\
                    LATE=2\n\
                    I=${}${:-d}\n";
        assert_eq!(
            pairs_with(text, &[("E", "env"), ("A2", "no")]),
            Ok(owned(&[
                ("A", "1"),
                ("B", "1-env--dflt-1"),
                ("C", "1-env--dflt-1"),
                ("D", "${A}"),
                ("F", "$A ${A:B} ${ ${A"),
                ("BARE", ""),
                ("G", "env"),
                ("H", ""),
                ("LATE", "2"),
                ("I", "d"),
            ]))
        );
        // The environment wins over an earlier line.
        assert_eq!(
            pairs_with("A=file\nB=${A}", &[("A", "env")]),
            Ok(owned(&[("A", "file"), ("B", "env")]))
        );
    }

    #[test]
    fn valid_keys() {
        for key in [
            "A",
            "_",
            "a1",
            "CHECK_INTERVAL",
            "_X9",
            "1A",
            "A-B",
            "Ä",
            "A.B",
            "a:b",
        ] {
            assert!(is_valid_key(key), "{key}");
        }
        for key in ["", "A B", "A=B", "A#", "A\tB", "A\nB"] {
            assert!(!is_valid_key(key), "{key}");
        }
    }
}
