//! How spec diagnostics look: the first line, carets under the right
//! characters, secondary labels, colour only when asked for.

use integration_spec::{parse, Colour, Diagnostics};

const HEAD: &str = r#"[integration]
name = "Echo"
base_url = "https://echo.example.com"

[endpoints.ping]
method = "POST"
path = "/ping"
"#;

fn errors(source: &str) -> Diagnostics {
    parse(source, "spec.toml").expect_err("the spec has an error")
}

/// The plain rendering of the only diagnostic.
fn only(source: &str) -> String {
    let diagnostics = errors(source);
    assert_eq!(diagnostics.len(), 1, "{diagnostics}");
    let first = diagnostics.iter().next().unwrap();
    diagnostics.render(first)
}

/// The line of the snippet that holds the primary carets.
fn caret_line(rendered: &str) -> &str {
    rendered
        .lines()
        .find(|l| l.contains('^'))
        .unwrap_or_else(|| panic!("no carets in\n{rendered}"))
}

#[test]
fn first_line_is_file_line_col_message_and_help_follows() {
    let text = only(&format!(
        "{HEAD}\n[entities.Ping]\ntext = {{ type = \"string\", bogus = 1 }}\n"
    ));
    let first = text.lines().next().unwrap();
    assert_eq!(
        first, "spec.toml:10:27: unknown key `bogus` in `entities.Ping.text`",
        "{text}"
    );
    assert!(text.contains("10 | text = { type = \"string\", bogus = 1 }"), "{text}");
    assert!(text.contains("note: in `entities.Ping.text.bogus`"), "{text}");
    assert!(text.contains("help: expected one of `type`"), "{text}");
}

#[test]
fn carets_sit_under_the_span_after_wide_and_combining_characters() {
    // `名前` takes four terminal columns for two characters, `é` written as
    // e + U+0301 takes one column for two characters.
    let line = "text = { type = \"string\", doc = \"名前 e\u{301}\", bogus = 1 }";
    let text = only(&format!("{HEAD}\n[entities.Ping]\n{line}\n"));
    let before = "text = { type = \"string\", doc = \"".len() + 4 + " ".len() + 1 + "\", ".len();
    assert_eq!(caret_line(&text), format!("   | {}^^^^^", " ".repeat(before)), "{text}");
    // The column in the first line counts characters, as rustc's does.
    assert!(text.starts_with("spec.toml:10:42: unknown key `bogus`"), "{text}");
}

#[test]
fn a_collision_points_at_both_definitions() {
    let text = only(&format!(
        "{HEAD}\n[entities.A]\nb_c = {{ type = \"enum\", values = [\"x\"] }}\n\n[entities.AB]\nc = {{ type = \"enum\", values = [\"y\"] }}\n"
    ));
    assert!(
        text.starts_with("spec.toml:13:1: enum fields `A.b_c` and `AB.c` both generate type `ABC`"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| l.starts_with("10 | b_c =")).expect(&text);
    assert_eq!(
        lines[first + 1].trim_end(),
        "   | --- `A.b_c` generates `ABC` first",
        "{text}"
    );
    let second = lines.iter().position(|l| l.starts_with("13 | c =")).expect(&text);
    assert_eq!(lines[second + 1].trim_end(), "   | ^", "{text}");
}

#[test]
fn an_entity_named_like_a_generated_type_points_at_the_integration_name() {
    let text = only(&format!("{HEAD}\n[entities.EchoClient]\ntext = \"string\"\n"));
    assert!(
        text.starts_with("spec.toml:9:11: entity name `EchoClient` collides"),
        "{text}"
    );
    assert!(text.contains("2 | name = \"Echo\""), "{text}");
    assert!(text.contains("the integration `Echo` generates `EchoClient`"), "{text}");
}

#[test]
fn colour_only_when_asked_for() {
    let diagnostics = errors(&format!("{HEAD}\n[entities.Ping]\ntext = {{ bogus = 1 }}\n"));
    let plain = diagnostics.report(Colour::Plain);
    let ansi = diagnostics.report(Colour::Ansi);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    assert_eq!(plain, diagnostics.to_string());
    assert!(plain.starts_with("error: spec.toml:"), "{plain}");
    assert!(ansi.contains("\u{1b}["), "{ansi}");
    assert!(ansi.contains("spec.toml:"), "{ansi}");
    let first = diagnostics.iter().next().unwrap();
    assert!(!diagnostics.render(first).contains('\u{1b}'));
}
