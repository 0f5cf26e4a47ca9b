//! Task templates as lm-evaluation-harness writes them: Jinja over a document's fields
//! (minijinja), with the Python string and list methods lm-eval's YAML files call
//! (`text.split(' ')`, `choices.label.index(answerKey)`, `answerKey.lstrip()`), a
//! `regex_replace(pattern, replacement)` filter (Rust `regex` syntax, `$1` for groups) and the
//! task's own named filters (a template over `value`).
//!
//! A field is read as lm-eval reads `doc_to_text`, `doc_to_choice` and `doc_to_target`: the name
//! of a document field gives that field's value; a template that is one `{{ expression }}` gives
//! the expression's value (a list, a number, a string); any other template renders to a string.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use regex::Regex;

/// The template environment of one task.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// An environment with the task's named `filters` (name → template over `value`).
    pub fn new(filters: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut env = Environment::new();
        // A field the document lacks is an error, not an empty string (`{% if field %}` still
        // tests it).
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_unknown_method_callback(python_methods);
        env.add_filter("regex_replace", regex_replace());
        for (name, source) in filters {
            let key = format!("filter:{name}");
            env.add_template_owned(key.clone(), source.clone()).map_err(|e| format!("filter `{name}`: {e}"))?;
            env.add_filter(name.clone(), move |state: &State, value: Value| -> Result<String, Error> {
                state.env().get_template(&key)?.render(minijinja::context! { value })
            });
        }
        Ok(Self { env })
    }

    /// Evaluate `field` on `doc` (see the module docs).
    pub fn eval(&self, field: &str, doc: &serde_json::Value) -> Result<Value, String> {
        if let Some(value) = doc.get(field) {
            return Ok(Value::from(Serde(value)));
        }
        let context = Value::from(Serde(doc));
        if let Some(expression) = single_expression(field) {
            let compiled = self.env.compile_expression(expression).map_err(|e| e.to_string())?;
            let explain = |e| self.explain(e, field, &compiled.undeclared_variables(false), doc);
            let value = compiled.eval(&context).map_err(explain)?;
            // An expression's value is not printed, so an undefined one (alone or in a list)
            // would pass silently.
            let undefined =
                value.is_undefined() || value.try_iter().is_ok_and(|mut items| items.any(|v| v.is_undefined()));
            if undefined {
                return Err(explain(Error::new(ErrorKind::UndefinedError, "the expression's value is undefined")));
            }
            return Ok(value);
        }
        let template = self.env.template_from_str(field).map_err(|e| e.to_string())?;
        template
            .render(&context)
            .map(Value::from)
            .map_err(|e| self.explain(e, field, &template.undeclared_variables(false), doc))
    }

    /// An evaluation error, naming the variables of `template` that `doc` lacks if there are any.
    fn explain(&self, error: Error, template: &str, variables: &HashSet<String>, doc: &serde_json::Value) -> String {
        let globals: HashSet<&str> = self.env.globals().map(|(name, _)| name).collect();
        let mut missing: Vec<&str> =
            variables.iter().map(String::as_str).filter(|v| doc.get(v).is_none() && !globals.contains(v)).collect();
        if missing.is_empty() {
            return error.to_string();
        }
        missing.sort_unstable();
        let fields: Vec<&str> = doc.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        format!(
            "template `{template}` uses `{}`, which the document does not have (its fields: {})",
            missing.join("`, `"),
            fields.join(", ")
        )
    }
}

/// The expression of a template that is exactly one `{{ … }}`.
fn single_expression(template: &str) -> Option<&str> {
    let inner = template.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

/// Python methods lm-eval's templates use beyond minijinja's: `list.index` and `str.index`, then
/// minijinja-contrib's Python string methods.
fn python_methods(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    let missing = |what: &Value| Error::new(ErrorKind::InvalidOperation, format!("{what} is not in {value}"));
    match (value.kind(), method, args) {
        (ValueKind::Seq, "index", [what]) => {
            for (i, item) in value.try_iter()?.enumerate() {
                if item == *what {
                    return Ok(Value::from(i));
                }
            }
            Err(missing(what))
        }
        (ValueKind::String, "index", [what]) => {
            let (s, needle) = (value.as_str().unwrap_or_default(), what.as_str().unwrap_or_default());
            s.find(needle).map(|b| Value::from(s[..b].chars().count())).ok_or_else(|| missing(what))
        }
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// The `regex_replace` filter, with compiled patterns kept.
fn regex_replace() -> impl Fn(String, String, String) -> Result<String, Error> + Send + Sync + 'static {
    let compiled: Arc<Mutex<HashMap<String, Regex>>> = Arc::default();
    move |value, pattern, replacement| {
        let mut compiled = compiled.lock().unwrap_or_else(|e| e.into_inner());
        if !compiled.contains_key(&pattern) {
            let re = Regex::new(&pattern)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("regex_replace: {e}")))?;
            compiled.insert(pattern.clone(), re);
        }
        Ok(compiled[&pattern].replace_all(&value, replacement.as_str()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(field: &str, doc: serde_json::Value) -> Value {
        Templates::new(&BTreeMap::new()).unwrap().eval(field, &doc).unwrap()
    }

    #[test]
    fn fields_expressions_and_templates() {
        let doc = serde_json::json!({"label": 1, "sol1": "a", "sol2": "b", "q": "Why"});
        assert_eq!(eval("label", doc.clone()), Value::from(1), "a field name gives the field");
        assert_eq!(eval("{{[sol1, sol2]}}", doc.clone()), Value::from(vec!["a", "b"]), "one expression keeps its type");
        assert_eq!(eval("{{ label - 1 }}", doc.clone()), Value::from(0));
        assert_eq!(eval("Question: {{q}}\nAnswer:", doc), Value::from("Question: Why\nAnswer:"));
    }

    #[test]
    fn python_methods_of_lm_eval_templates() {
        let doc = serde_json::json!({"text": "the last word", "choices": {"label": ["A", "B"]}, "key": " B"});
        assert_eq!(eval("{{text.split(' ')[:-1]|join(' ')}}", doc.clone()), Value::from("the last"));
        assert_eq!(eval("{{' '+text.split(' ')[-1]}}", doc.clone()), Value::from(" word"));
        assert_eq!(eval("{{choices.label.index(key.lstrip())}}", doc.clone()), Value::from(1));
        let err = Templates::new(&BTreeMap::new()).unwrap().eval("{{choices.label.index('C')}}", &doc).unwrap_err();
        assert!(err.contains("is not in"), "{err}");
    }

    #[test]
    fn a_field_the_document_lacks_is_an_error_naming_it() {
        let t = Templates::new(&BTreeMap::new()).unwrap();
        let doc = serde_json::json!({"question": "Why", "answer": "Because"});
        for template in ["Q: {{questoin}}\nA:", "{{ questoin }}", "{{ [question, answr] }}"] {
            let e = t.eval(template, &doc).unwrap_err();
            assert!(e.contains(template) && e.contains("which the document does not have"), "{template}: {e}");
            assert!(e.contains("questoin") || e.contains("answr"), "{e}");
            assert!(e.contains("answer, question"), "the document's fields: {e}");
        }
        let tested = "{% if hint %}Hint: {{hint}} {% endif %}{{question}}";
        assert_eq!(t.eval(tested, &doc).unwrap(), Value::from("Why"), "a field may still be tested");
    }

    #[test]
    fn named_filters_and_regex_replace() {
        let filters = BTreeMap::from([(
            "clean".to_string(),
            "{{ value|trim|replace(' [title]', '. ')|regex_replace('\\\\[.*?\\\\]', '')|replace('  ', ' ') }}"
                .to_string(),
        )]);
        let t = Templates::new(&filters).unwrap();
        let doc = serde_json::json!({"e": [" A [title]B [header] c  d "]});
        assert_eq!(t.eval("{{ e|map('clean')|list }}", &doc).unwrap(), Value::from(vec!["A. B c d"]));
    }
}
