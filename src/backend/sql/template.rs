//! Statements written once, rendered per database.
//!
//! A template names its parameters (`:rev`) and writes the key column as `@key` (a reserved
//! word in MySQL). Rendering turns each name into the database's placeholder and records which
//! argument each placeholder binds: PostgreSQL (`$1`) numbers the names, so a name used twice is
//! bound once; SQLite and MySQL take a plain `?`, bound once per use. Callers pass arguments in
//! the order the statement declared its names, whatever the database.
//!
//! SQLite could number its placeholders too (`?1`), but sqlx then asks SQLite for each
//! parameter's name when binding, and SQLite finds a name by walking the statement's list of
//! names: quadratic in the parameters of a multi-row insert, 3.5% of the server's time in a
//! `txn-put` profile. Anonymous `?` have no names to look up.

use std::sync::Arc;

use super::driver::Value;

/// How a database writes its placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1`, `$2`: each argument once, by number (PostgreSQL).
    Dollar,
    /// `?` per use, bound in order of use (SQLite, MySQL).
    Question,
}

impl Placeholders {
    /// The placeholder of the `n`th argument (from 1).
    pub fn nth(self, n: usize) -> String {
        match self {
            Placeholders::Dollar => format!("${n}"),
            Placeholders::Question => "?".to_string(),
        }
    }
}

/// A rendered statement: its text and, for each placeholder in binding order, the index of the
/// argument it takes.
#[derive(Clone, Debug)]
pub struct Sql {
    pub text: Arc<str>,
    pub binds: Vec<usize>,
}

impl Sql {
    /// Renders `template`, whose parameters are `names` (the order arguments are passed in).
    /// A colon not followed by one of `names` is kept (a cast such as `::boolean`).
    pub fn render(style: Placeholders, key_column: &str, template: &str, names: &[&str]) -> Sql {
        let template = template.replace("@key", key_column);
        let mut text = String::with_capacity(template.len());
        let mut binds = Vec::new();
        let mut numbered: Vec<usize> = Vec::new();
        let mut rest = template.as_str();
        while let Some(at) = rest.find(':') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let name_len = after
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(after.len());
            let Some(argument) = names.iter().position(|n| *n == &after[..name_len]) else {
                text.push(':');
                rest = after;
                continue;
            };
            let n = match style {
                Placeholders::Question => {
                    binds.push(argument);
                    binds.len()
                }
                Placeholders::Dollar => match numbered.iter().position(|a| *a == argument) {
                    Some(index) => index + 1,
                    None => {
                        numbered.push(argument);
                        numbered.len()
                    }
                },
            };
            text.push_str(&style.nth(n));
            rest = &after[name_len..];
        }
        text.push_str(rest);
        if style != Placeholders::Question {
            binds = numbered;
        }
        Sql {
            text: text.into(),
            binds,
        }
    }

    /// A statement whose placeholders are written by `build` with the placeholder function it
    /// is given, numbered from 1 in the order the arguments are passed.
    pub fn numbered(
        style: Placeholders,
        arguments: usize,
        build: impl Fn(&dyn Fn(usize) -> String) -> String,
    ) -> Sql {
        Sql {
            text: build(&|n| style.nth(n)).into(),
            binds: (0..arguments).collect(),
        }
    }
}

/// Statements with their arguments, joined into one query (for a driver that runs several
/// statements of one query, binding them in order): the texts joined by `;`, and the
/// arguments of each statement after those of the one before.
pub fn joined<'a>(parts: &[(&Sql, Vec<Value<'a>>)]) -> (Sql, Vec<Value<'a>>) {
    let mut text = String::new();
    let mut binds = Vec::new();
    let mut arguments = Vec::new();
    for (sql, own) in parts {
        if !text.is_empty() {
            text.push_str(";\n");
        }
        text.push_str(&sql.text);
        binds.extend(sql.binds.iter().map(|bind| bind + arguments.len()));
        arguments.extend(own.iter().copied());
    }
    let sql = Sql {
        text: text.into(),
        binds,
    };
    (sql, arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_bind_each_name_once_and_question_marks_each_use() {
        let template = "SELECT :rev, @key FROM t WHERE a = :key AND b <= :rev AND c::text = 'x'";
        let names = ["key", "rev"];
        let pg = Sql::render(Placeholders::Dollar, "key", template, &names);
        assert_eq!(
            &*pg.text,
            "SELECT $1, key FROM t WHERE a = $2 AND b <= $1 AND c::text = 'x'"
        );
        assert_eq!(pg.binds, [1, 0]);
        let my = Sql::render(Placeholders::Question, "`key`", template, &names);
        assert_eq!(
            &*my.text,
            "SELECT ?, `key` FROM t WHERE a = ? AND b <= ? AND c::text = 'x'"
        );
        assert_eq!(my.binds, [1, 0, 1]);
    }

    #[test]
    fn joined_statements_bind_each_ones_arguments_after_the_ones_before() {
        let first = Sql::render(Placeholders::Question, "key", "A :x :y :x", &["x", "y"]);
        let second = Sql::render(Placeholders::Question, "key", "B :z", &["z"]);
        let parts = [
            (&first, vec![Value::Int(1), Value::Int(2)]),
            (&second, vec![Value::Int(3)]),
        ];
        let (sql, arguments) = joined(&parts);
        assert_eq!(&*sql.text, "A ? ? ?;\nB ?");
        assert_eq!(sql.binds, [0, 1, 0, 2]);
        assert_eq!(arguments.len(), 3);
    }
}
