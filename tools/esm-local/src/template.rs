//! A CloudFormation / SAM template read far enough to resolve one resource's properties the way
//! CloudFormation would: parameters (their `Default`, or an override like `sam deploy
//! --parameter-overrides`), `Conditions`, and the intrinsic functions the project's template uses
//! (`Ref`, `Fn::If`, `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`, `Fn::Sub`,
//! `Fn::GetAtt`, `Fn::Join`, `Fn::Select`, `Fn::Split`, `AWS::NoValue`), in their short YAML tag
//! form (`!Ref X`) or their long form (`{"Ref": "X"}`).
//!
//! The YAML is loaded with saphyr, which keeps a node's custom tag; each `!Tag` node becomes the
//! long form (`{"Fn::Tag": ...}`, `{"Ref": ...}`) in a `serde_json::Value`, so one evaluator serves
//! both spellings. Resources are not created: `Ref` of a resource is its logical id and
//! `Fn::GetAtt X.Arn` an ARN made from it (account 123456789012, region us-east-1), which is what
//! a local run needs to tell an S3 bucket from an SQS queue.

use std::collections::BTreeMap;

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Value};

/// The account id the local ARNs carry.
pub const LOCAL_ACCOUNT: &str = "123456789012";
/// The region the local ARNs carry.
pub const LOCAL_REGION: &str = "us-east-1";
/// How deep conditions may refer to conditions (a cycle stops here).
const MAX_DEPTH: usize = 64;

/// Something in the template that cannot be read or resolved; `at` names where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {at}: {problem}")]
pub struct TemplateError {
    /// Where: `Resources.X.Properties.Y`, `Conditions.Z`, `Parameters.P`, ...
    pub at: String,
    /// What is wrong.
    pub problem: String,
}

fn err(at: &str, problem: impl Into<String>) -> TemplateError {
    TemplateError {
        at: at.to_owned(),
        problem: problem.into(),
    }
}

/// A loaded template with its parameter values fixed.
#[derive(Debug, Clone)]
pub struct Template {
    root: Map<String, Value>,
    /// Parameter name -> its value (a string, or a list for `CommaDelimitedList`), `None` when it
    /// has no default and was not given.
    params: BTreeMap<String, Option<Value>>,
    stack_name: String,
}

impl Template {
    /// Parses `text` and fixes the parameters: `overrides` (`Key=Value`) win over `Default`s.
    /// An override naming no parameter of the template is refused (a typo would be silent).
    ///
    /// ```
    /// use esm_local::template::Template;
    /// let t = Template::parse(
    ///     "Parameters: {Size: {Type: Number, Default: 10}}\nResources: {}",
    ///     &[("Size".into(), "20".into())],
    ///     "stack",
    /// )
    /// .unwrap();
    /// let v = t.resolve(&serde_json::json!({"Ref": "Size"}), "here").unwrap();
    /// assert_eq!(v, Some(serde_json::json!("20")));
    /// ```
    pub fn parse(
        text: &str,
        overrides: &[(String, String)],
        stack_name: &str,
    ) -> Result<Self, TemplateError> {
        let docs = Yaml::load_from_str(text).map_err(|e| err("(file)", e.to_string()))?;
        let doc = docs
            .into_iter()
            .next()
            .ok_or_else(|| err("(file)", "no YAML document"))?;
        let root = match to_json(&doc, "(root)")? {
            Value::Object(m) => m,
            _ => return Err(err("(root)", "is not a mapping")),
        };
        let mut params = BTreeMap::new();
        if let Some(Value::Object(ps)) = root.get("Parameters") {
            for (name, p) in ps {
                let ty = p.get("Type").and_then(Value::as_str).unwrap_or("String");
                let value = match p.get("Default") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(param_value(
                        ty,
                        &scalar_text(v).ok_or_else(|| {
                            err(&format!("Parameters.{name}.Default"), "is not a scalar")
                        })?,
                    )),
                };
                params.insert(name.clone(), value);
            }
        }
        for (k, v) in overrides {
            let ty = root
                .get("Parameters")
                .and_then(|p| p.get(k))
                .and_then(|p| p.get("Type"))
                .and_then(Value::as_str)
                .unwrap_or("String");
            match params.get_mut(k) {
                Some(slot) => *slot = Some(param_value(ty, v)),
                None => {
                    return Err(err(
                        "--parameter-overrides",
                        format!("`{k}` is not a parameter of the template"),
                    ));
                }
            }
        }
        Ok(Self {
            root,
            params,
            stack_name: stack_name.to_owned(),
        })
    }

    /// The resource `logical_id` as written (unresolved), or an error naming it.
    pub fn resource(&self, logical_id: &str) -> Result<&Map<String, Value>, TemplateError> {
        self.root
            .get("Resources")
            .and_then(|r| r.get(logical_id))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                err(
                    &format!("Resources.{logical_id}"),
                    "no such resource in the template",
                )
            })
    }

    /// The logical ids of the resources of type `ty`.
    pub fn resources_of_type(&self, ty: &str) -> Vec<String> {
        self.root
            .get("Resources")
            .and_then(Value::as_object)
            .map(|r| {
                r.iter()
                    .filter(|(_, v)| v.get("Type").and_then(Value::as_str) == Some(ty))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `Globals.<section>` as written (a SAM template's defaults for its functions).
    pub fn globals(&self, section: &str) -> Option<&Value> {
        self.root.get("Globals").and_then(|g| g.get(section))
    }

    /// Evaluates the condition `name` of the template's `Conditions`.
    pub fn condition(&self, name: &str) -> Result<bool, TemplateError> {
        self.condition_at(name, 0)
    }

    fn condition_at(&self, name: &str, depth: usize) -> Result<bool, TemplateError> {
        let at = format!("Conditions.{name}");
        if depth > MAX_DEPTH {
            return Err(err(&at, "conditions refer to each other in a cycle"));
        }
        let c = self
            .root
            .get("Conditions")
            .and_then(|c| c.get(name))
            .ok_or_else(|| err(&at, "no such condition"))?;
        match self.eval(c, &at, depth + 1)? {
            Some(Value::Bool(b)) => Ok(b),
            other => Err(err(&at, format!("is not true or false but {other:?}"))),
        }
    }

    /// Resolves `v` found at `at` (for errors): `None` when it is `AWS::NoValue`.
    pub fn resolve(&self, v: &Value, at: &str) -> Result<Option<Value>, TemplateError> {
        self.eval(v, at, 0)
    }

    fn eval(&self, v: &Value, at: &str, depth: usize) -> Result<Option<Value>, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(err(
                at,
                "nested too deeply (or conditions refer to each other in a cycle)",
            ));
        }
        let d = depth + 1;
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(x) = self.eval(item, &format!("{at}[{i}]"), d)? {
                        out.push(x);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().expect("one entry");
                if k == "Ref" || k == "Condition" || k.starts_with("Fn::") {
                    self.intrinsic(k, arg, &format!("{at}.{k}"), d)
                } else {
                    self.eval_object(m, at, d)
                }
            }
            Value::Object(m) => self.eval_object(m, at, d),
            other => Ok(Some(other.clone())),
        }
    }

    /// `Ref`, `Condition` and the condition functions; the others go to [`Self::text_intrinsic`].
    fn intrinsic(
        &self,
        k: &str,
        arg: &Value,
        at: &str,
        d: usize,
    ) -> Result<Option<Value>, TemplateError> {
        match k {
            "Ref" => self.reference(arg, at),
            "Condition" => {
                let name = arg
                    .as_str()
                    .ok_or_else(|| err(at, "takes a condition name"))?;
                Ok(Some(Value::Bool(self.condition_at(name, d)?)))
            }
            "Fn::If" => {
                let [c, yes, no] = args::<3>(arg, at)?;
                let name = c
                    .as_str()
                    .ok_or_else(|| err(at, "takes a condition name first"))?;
                let pick = if self.condition_at(name, d)? { yes } else { no };
                self.eval(pick, at, d)
            }
            "Fn::Equals" => {
                let [a, b] = args::<2>(arg, at)?;
                let a = self.eval_scalar(a, at, d)?;
                let b = self.eval_scalar(b, at, d)?;
                Ok(Some(Value::Bool(a == b)))
            }
            "Fn::Not" => {
                let [c] = args::<1>(arg, at)?;
                Ok(Some(Value::Bool(!self.eval_bool(c, at, d)?)))
            }
            "Fn::And" | "Fn::Or" => {
                let items = arg
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| err(at, "takes a list of conditions"))?;
                let mut acc = k == "Fn::And";
                for c in items {
                    let b = self.eval_bool(c, at, d)?;
                    acc = if k == "Fn::And" { acc && b } else { acc || b };
                }
                Ok(Some(Value::Bool(acc)))
            }
            _ => self.text_intrinsic(k, arg, at, d),
        }
    }

    /// The functions that build strings and lists; any other `Fn::` is refused by name.
    fn text_intrinsic(
        &self,
        k: &str,
        arg: &Value,
        at: &str,
        d: usize,
    ) -> Result<Option<Value>, TemplateError> {
        match k {
            "Fn::Sub" => self.sub(arg, at, d).map(|s| Some(Value::String(s))),
            "Fn::GetAtt" => {
                let (res, attr) = match arg {
                    Value::String(s) => s
                        .split_once('.')
                        .map(|(a, b)| (a.to_owned(), b.to_owned()))
                        .ok_or_else(|| err(at, "takes Resource.Attribute"))?,
                    Value::Array(a) if a.len() == 2 => (
                        self.eval_scalar(&a[0], at, d)?,
                        self.eval_scalar(&a[1], at, d)?,
                    ),
                    _ => return Err(err(at, "takes Resource.Attribute")),
                };
                self.get_att(&res, &attr, at)
                    .map(|s| Some(Value::String(s)))
            }
            "Fn::Join" => {
                let [sep, list] = args::<2>(arg, at)?;
                let sep = self.eval_scalar(sep, at, d)?;
                let list = self.eval_list(list, at, d)?;
                Ok(Some(Value::String(list.join(&sep))))
            }
            "Fn::Split" => {
                let [sep, s] = args::<2>(arg, at)?;
                let sep = self.eval_scalar(sep, at, d)?;
                let s = self.eval_scalar(s, at, d)?;
                Ok(Some(Value::Array(
                    s.split(sep.as_str())
                        .map(|p| Value::String(p.to_owned()))
                        .collect(),
                )))
            }
            "Fn::Select" => {
                let [i, list] = args::<2>(arg, at)?;
                let i: usize = self
                    .eval_scalar(i, at, d)?
                    .parse()
                    .map_err(|_| err(at, "takes an index first"))?;
                let list = self.eval_list(list, at, d)?;
                list.get(i)
                    .map(|s| Some(Value::String(s.clone())))
                    .ok_or_else(|| err(at, format!("index {i} is past the list")))
            }
            _ => Err(err(
                at,
                "is an intrinsic function esm-local does not evaluate",
            )),
        }
    }

    fn eval_object(
        &self,
        m: &Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
        let mut out = Map::new();
        for (k, v) in m {
            if let Some(x) = self.eval(v, &format!("{at}.{k}"), depth)? {
                out.insert(k.clone(), x);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    fn eval_scalar(&self, v: &Value, at: &str, depth: usize) -> Result<String, TemplateError> {
        let r = self.eval(v, at, depth)?;
        r.as_ref()
            .and_then(scalar_text)
            .ok_or_else(|| err(at, format!("needs a single value, got {r:?}")))
    }

    fn eval_bool(&self, v: &Value, at: &str, depth: usize) -> Result<bool, TemplateError> {
        match self.eval(v, at, depth)? {
            Some(Value::Bool(b)) => Ok(b),
            other => Err(err(at, format!("needs a condition, got {other:?}"))),
        }
    }

    fn eval_list(&self, v: &Value, at: &str, depth: usize) -> Result<Vec<String>, TemplateError> {
        match self.eval(v, at, depth)? {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| scalar_text(x).ok_or_else(|| err(at, "needs a list of values")))
                .collect(),
            other => Err(err(at, format!("needs a list, got {other:?}"))),
        }
    }

    fn reference(&self, arg: &Value, at: &str) -> Result<Option<Value>, TemplateError> {
        let name = arg
            .as_str()
            .ok_or_else(|| err(at, "takes a parameter or resource name"))?;
        if name == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(v) = self.pseudo(name) {
            return Ok(Some(Value::String(v)));
        }
        if let Some(p) = self.params.get(name) {
            return p.clone().map(Some).ok_or_else(|| {
                err(
                    at,
                    format!(
                        "parameter `{name}` has no Default: give --parameter-overrides {name}=VALUE"
                    ),
                )
            });
        }
        if self.resource(name).is_ok() {
            return Ok(Some(Value::String(name.to_owned())));
        }
        Err(err(
            at,
            format!("`{name}` is neither a parameter nor a resource"),
        ))
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::StackName" => self.stack_name.clone(),
            "AWS::Region" => LOCAL_REGION.into(),
            "AWS::AccountId" => LOCAL_ACCOUNT.into(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            "AWS::StackId" => format!(
                "arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stack/{}/local",
                self.stack_name
            ),
            _ => return None,
        })
    }

    /// `Fn::GetAtt`: the ARN of an S3 bucket, SQS queue or function, from its logical id (or its
    /// `BucketName` / `QueueName` / `FunctionName` when the template fixes one).
    fn get_att(&self, res: &str, attr: &str, at: &str) -> Result<String, TemplateError> {
        let r = self.resource(res).map_err(|e| err(at, e.to_string()))?;
        let ty = r.get("Type").and_then(Value::as_str).unwrap_or("");
        let fixed = |key: &str| {
            r.get("Properties")
                .and_then(|p| p.get(key))
                .and_then(Value::as_str)
                .unwrap_or(res)
                .to_owned()
        };
        Ok(match (ty, attr) {
            ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{}", fixed("BucketName")),
            ("AWS::SQS::Queue", "Arn") => format!(
                "arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{}",
                fixed("QueueName")
            ),
            ("AWS::SQS::Queue", "QueueName") => fixed("QueueName"),
            ("AWS::Serverless::Function" | "AWS::Lambda::Function", "Arn") => format!(
                "arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{}",
                fixed("FunctionName")
            ),
            _ => format!("arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{res}/{attr}"),
        })
    }

    fn sub(&self, arg: &Value, at: &str, depth: usize) -> Result<String, TemplateError> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(a) if a.len() == 2 => (
                a[0].as_str()
                    .ok_or_else(|| err(at, "takes a string first"))?,
                a[1].as_object(),
            ),
            _ => return Err(err(at, "takes a string or [string, {variables}]")),
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| err(at, "has a `${` without its `}`"))?;
            let name = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
                continue;
            }
            if let Some(v) = vars.and_then(|m| m.get(name)) {
                out.push_str(&self.eval_scalar(v, at, depth)?);
            } else if let Some((res, attr)) = name.split_once('.') {
                out.push_str(&self.get_att(res, attr, at)?);
            } else {
                let v = self.reference(&Value::String(name.to_owned()), at)?;
                out.push_str(
                    &v.as_ref()
                        .and_then(scalar_text)
                        .ok_or_else(|| err(at, format!("`${{{name}}}` is not a single value")))?,
                );
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// A parameter's value as `Ref` gives it: a list for `CommaDelimitedList`, else its text.
fn param_value(ty: &str, text: &str) -> Value {
    if ty == "CommaDelimitedList" || ty.starts_with("List<") {
        Value::Array(
            text.split(',')
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )
    } else {
        Value::String(text.to_owned())
    }
}

/// The text of a scalar (CloudFormation compares and substitutes values as strings).
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn args<'a, const N: usize>(arg: &'a Value, at: &str) -> Result<[&'a Value; N], TemplateError> {
    let a = arg
        .as_array()
        .filter(|a| a.len() == N)
        .ok_or_else(|| err(at, format!("takes a list of {N}")))?;
    Ok(std::array::from_fn(|i| &a[i]))
}

/// A YAML node as JSON, CloudFormation short tags turned into their long form.
fn to_json(y: &Yaml, at: &str) -> Result<Value, TemplateError> {
    Ok(match y {
        Yaml::Value(s) => match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::from(*i),
            Scalar::FloatingPoint(f) => serde_json::Number::from_f64(f.into_inner())
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Scalar::String(s) => Value::String(s.to_string()),
        },
        Yaml::Representation(s, _, _) => Value::String(s.to_string()),
        Yaml::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| to_json(x, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = to_json(k, at)?;
                let key =
                    scalar_text(&key).ok_or_else(|| err(at, "has a key that is not a scalar"))?;
                let v = to_json(v, &format!("{at}.{key}"))?;
                out.insert(key, v);
            }
            Value::Object(out)
        }
        Yaml::Tagged(tag, inner) => {
            let inner = to_json(inner, at)?;
            let name = tag.suffix.as_str();
            let (key, arg) = match name {
                "Ref" | "Condition" => (name.to_owned(), inner),
                "GetAtt" => (
                    "Fn::GetAtt".to_owned(),
                    match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((a, b)) => {
                                Value::Array(vec![Value::String(a.into()), Value::String(b.into())])
                            }
                            None => Value::String(s),
                        },
                        other => other,
                    },
                ),
                _ => (format!("Fn::{name}"), inner),
            };
            let mut m = Map::new();
            m.insert(key, arg);
            Value::Object(m)
        }
        Yaml::Alias(_) => return Err(err(at, "YAML aliases are not supported")),
        Yaml::BadValue => return Err(err(at, "is not a valid YAML value")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: &str = r#"
Parameters:
  Source: {Type: String, Default: MSK}
  Size: {Type: Number, Default: 100}
  Servers: {Type: CommaDelimitedList, Default: "a:1, b:2"}
  Empty: {Type: String, Default: ""}
  NoDefault: {Type: String}
  Path: {Type: String, Default: "x/y"}
Conditions:
  UseMsk: !Equals [!Ref Source, MSK]
  HasEmpty: !Not [!Equals [!Ref Empty, ""]]
  Both: !And [!Condition UseMsk, !Not [!Condition HasEmpty]]
  Either: !Or [!Condition HasEmpty, !Condition UseMsk]
  InRoot: !Equals [!Select [0, !Split ["/", !Ref Path]], ""]
  Loop: !Condition Loop
Resources:
  Bucket: {Type: AWS::S3::Bucket}
  Queue: {Type: AWS::SQS::Queue, Properties: {QueueName: q1}}
  Fn: {Type: AWS::Serverless::Function}
"#;

    fn t(overrides: &[(&str, &str)]) -> Template {
        let o: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Template::parse(T, &o, "st").unwrap()
    }

    fn yaml(t: &Template, text: &str) -> Result<Option<Value>, TemplateError> {
        let v = to_json(&Yaml::load_from_str(text).unwrap()[0], "x").unwrap();
        t.resolve(&v, "x")
    }

    #[test]
    fn refs_take_defaults_overrides_and_pseudo_parameters() {
        let d = t(&[]);
        assert_eq!(yaml(&d, "!Ref Size").unwrap(), Some(json!("100")));
        assert_eq!(
            yaml(&d, "!Ref Servers").unwrap(),
            Some(json!(["a:1", "b:2"]))
        );
        assert_eq!(yaml(&d, "!Ref AWS::StackName").unwrap(), Some(json!("st")));
        assert_eq!(yaml(&d, "!Ref Bucket").unwrap(), Some(json!("Bucket")));
        assert_eq!(yaml(&d, "{Ref: Size}").unwrap(), Some(json!("100")));
        let o = t(&[("Size", "7")]);
        assert_eq!(yaml(&o, "!Ref Size").unwrap(), Some(json!("7")));
    }

    #[test]
    fn conditions_and_if_with_no_value() {
        let d = t(&[]);
        assert!(d.condition("UseMsk").unwrap());
        assert!(!d.condition("HasEmpty").unwrap());
        assert!(d.condition("Both").unwrap());
        assert!(d.condition("Either").unwrap());
        assert!(!d.condition("InRoot").unwrap());
        assert!(
            !t(&[("Source", "SelfManagedKafka")])
                .condition("UseMsk")
                .unwrap()
        );
        assert!(t(&[("Path", "/abs")]).condition("InRoot").unwrap());
        assert_eq!(
            yaml(&d, "{a: !If [UseMsk, 1, 2], b: !If [HasEmpty, x, !Ref AWS::NoValue], c: [!Ref AWS::NoValue, 3]}")
                .unwrap(),
            Some(json!({"a": 1, "c": [3]}))
        );
        assert_eq!(yaml(&d, "!Ref AWS::NoValue").unwrap(), None);
    }

    #[test]
    fn sub_get_att_and_join() {
        let d = t(&[]);
        assert_eq!(
            yaml(
                &d,
                r#"!Sub "kafka://${Source}${Empty}.x-${!Lit}-${AWS::Region}""#
            )
            .unwrap(),
            Some(json!("kafka://MSK.x-${Lit}-us-east-1"))
        );
        assert_eq!(
            yaml(&d, "!Sub ['${A}-${Bucket.Arn}', {A: !Ref Size}]").unwrap(),
            Some(json!("100-arn:aws:s3:::Bucket"))
        );
        assert_eq!(
            yaml(&d, "!GetAtt Queue.Arn").unwrap(),
            Some(json!("arn:aws:sqs:us-east-1:123456789012:q1"))
        );
        assert_eq!(
            yaml(&d, "!GetAtt Fn.Arn").unwrap(),
            Some(json!("arn:aws:lambda:us-east-1:123456789012:function:Fn"))
        );
        assert_eq!(
            yaml(&d, "!Join ['-', [a, !Ref Size]]").unwrap(),
            Some(json!("a-100"))
        );
    }

    #[test]
    fn errors_name_the_place_and_the_cause() {
        let d = t(&[]);
        let e = yaml(&d, "!Ref NoDefault").unwrap_err();
        assert!(
            e.problem.contains("--parameter-overrides NoDefault="),
            "{e}"
        );
        let e = yaml(&d, "!Ref Nope").unwrap_err();
        assert!(
            e.problem.contains("neither a parameter nor a resource"),
            "{e}"
        );
        let e = d.condition("Loop").unwrap_err();
        assert!(e.problem.contains("cycle"), "{e}");
        let e = yaml(&d, "!FindInMap [a, b, c]").unwrap_err();
        assert!(e.at.ends_with("Fn::FindInMap"), "{e}");
        let e = yaml(&d, "!If [Missing, 1, 2]").unwrap_err();
        assert_eq!(e.at, "Conditions.Missing");
        let e = Template::parse(T, &[("Typo".into(), "1".into())], "s").unwrap_err();
        assert!(e.problem.contains("`Typo` is not a parameter"), "{e}");
        assert!(Template::parse("a: [", &[], "s").is_err());
    }
}
