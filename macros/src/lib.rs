//! openco's procedural macros: `#[openco::main]`. Use them through the `openco` crate, which
//! re-exports them; the code they expand to names `::openco` paths.
//!
//! The grammar is small, so the input is parsed by hand from the `TokenStream`, without
//! `syn`. A bad input expands to a `compile_error!` pointing at the offending token, followed
//! by the item as it was written (as `tokio-macros` does), so that the rest of the crate is
//! still checked.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::iter::Peekable;

use proc_macro::{token_stream, Delimiter, Group, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// Runs `main`'s body inside a coroutine of an openco runtime, so that blocking calls made
/// directly in `main` suspend a coroutine like those of any job.
///
/// Options, each an integer literal, both optional:
/// - `workers = N`: worker threads (default: one per CPU, or `OPENCO_WORKERS`);
/// - `stack_size = BYTES`: the coroutine stack size (default 2 MiB, or `OPENCO_STACK_SIZE`),
///   at least `openco::MIN_STACK_SIZE`.
///
/// The runtime is built with `openco::Builder`, the body runs on one of its coroutines, and
/// the runtime is shut down when the body returns: jobs that have started are waited for,
/// jobs that have not are cancelled (as when any `openco::Runtime` is dropped). Jobs that
/// the body submits with `openco::task!` go to this runtime.
///
/// - A return type is allowed if it implements `std::process::Termination`, as for any
///   `main` (`Result<(), Box<dyn Error>>`, `io::Result<()>`, `ExitCode`...). It is reported
///   inside the coroutine (an `Err` prints `Error: ...` to stderr, as std does), so it need not
///   be `Send`; the generated function returns the resulting `std::process::ExitCode`.
/// - A panic in the body makes `main` panic with the same payload, after the shutdown.
/// - The body becomes a `move` closure that runs on a worker thread: it must be `Send +
///   'static`, which a body that captures nothing is. Thread-locals and
///   `std::thread::current()` are the worker's, not the main thread's.
/// - The function must be a plain `fn` without arguments (not `async`, not generic).
///
/// ```
/// use std::time::{Duration, Instant};
///
/// #[openco::main(workers = 2, stack_size = 262144)]
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     assert!(openco::in_coroutine());
///     let start = Instant::now();
///     let jobs: Vec<_> = (0..100)
///         .map(|i| openco::task!(|i| { std::thread::sleep(Duration::from_millis(50)); i }, i))
///         .collect();
///     std::thread::sleep(Duration::from_millis(50)); // suspends main's coroutine
///     let sum: u64 = jobs.into_iter().map(|job| job.join()).sum::<Result<u64, _>>()?;
///     assert_eq!(sum, 4950);
///     assert!(start.elapsed() < Duration::from_secs(2)); // 101 sleeps, 2 threads
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    let expanded = Options::parse(attr).and_then(|options| Ok(MainFn::parse(item.clone())?.expand(&options)));
    match expanded {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            tokens
        }
    }
}

/// A compile error at a span.
struct Error {
    span: Span,
    message: String,
}

fn error(span: Span, message: impl Into<String>) -> Error {
    Error { span, message: message.into() }
}

impl Error {
    /// `::core::compile_error! { "message" }`, every token at the error's span.
    fn to_compile_error(&self) -> TokenStream {
        let mut message = Literal::string(&self.message);
        message.set_span(self.span);
        let mut body = Group::new(Delimiter::Brace, TokenTree::Literal(message).into());
        body.set_span(self.span);
        let mut tokens = respan(code("::core::compile_error!"), self.span);
        tokens.extend([TokenTree::Group(body)]);
        tokens
    }
}

/// The options of `#[openco::main(...)]`, each with the span of its value.
#[derive(Default)]
struct Options {
    workers: Option<(usize, Span)>,
    stack_size: Option<(usize, Span)>,
}

const EXPECTED_OPTION: &str = "expected `workers = N` or `stack_size = BYTES`";

impl Options {
    /// `(key = integer-literal),*` with an optional trailing comma.
    fn parse(attr: TokenStream) -> Result<Options, Error> {
        let mut options = Options::default();
        let mut tokens = attr.into_iter().peekable();
        while let Some(token) = tokens.next() {
            let TokenTree::Ident(key) = token else {
                return Err(error(token.span(), format!("#[openco::main]: {EXPECTED_OPTION}")));
            };
            let name = key.to_string();
            let slot = match name.as_str() {
                "workers" => &mut options.workers,
                "stack_size" => &mut options.stack_size,
                _ => {
                    return Err(error(
                        key.span(),
                        format!("#[openco::main]: unknown option `{name}`: {EXPECTED_OPTION}"),
                    ))
                }
            };
            if slot.is_some() {
                return Err(error(key.span(), format!("#[openco::main]: `{name}` is given twice")));
            }
            match tokens.next() {
                Some(TokenTree::Punct(p)) if p.as_char() == '=' => {}
                other => {
                    let span = other.map_or(key.span(), |t| t.span());
                    return Err(error(span, format!("#[openco::main]: expected `=` after `{name}`")));
                }
            }
            let (value, span) = integer(&name, tokens.next(), key.span())?;
            if name == "workers" && value == 0 {
                return Err(error(span, "#[openco::main]: `workers` must be at least 1"));
            }
            *slot = Some((value, span));
            expect_comma(&mut tokens)?;
        }
        Ok(options)
    }
}

/// The value of `name = value`: an integer literal (`_` separators, an integer suffix and a
/// `0x`/`0o`/`0b` prefix allowed), possibly in an invisible group (from a `macro_rules!`).
fn integer(name: &str, token: Option<TokenTree>, key_span: Span) -> Result<(usize, Span), Error> {
    let not_integer =
        |span| error(span, format!("#[openco::main]: `{name}` takes an integer literal, such as `{name} = 4`"));
    let literal = match token {
        Some(TokenTree::Literal(literal)) => literal,
        Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::None => {
            let mut inner = group.stream().into_iter();
            match (inner.next(), inner.next()) {
                (Some(TokenTree::Literal(literal)), None) => literal,
                _ => return Err(not_integer(group.span())),
            }
        }
        Some(other) => return Err(not_integer(other.span())),
        None => return Err(not_integer(key_span)),
    };
    let text = literal.to_string().replace('_', "");
    let suffixes = ["usize", "isize", "u128", "i128", "u64", "i64", "u32", "i32", "u16", "i16", "u8", "i8"];
    let (digits, radix) = match text.get(..2) {
        Some("0x") => (&text[2..], 16),
        Some("0o") => (&text[2..], 8),
        Some("0b") => (&text[2..], 2),
        _ => (&text[..], 10),
    };
    let digits = suffixes.iter().find_map(|s| digits.strip_suffix(s)).unwrap_or(digits);
    match usize::from_str_radix(digits, radix) {
        Ok(value) if !digits.is_empty() => Ok((value, literal.span())),
        _ if !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)) => {
            Err(error(literal.span(), format!("#[openco::main]: `{name}` is too large")))
        }
        _ => Err(not_integer(literal.span())),
    }
}

/// After a `key = value`: the end, or a comma.
fn expect_comma(tokens: &mut Peekable<token_stream::IntoIter>) -> Result<(), Error> {
    match tokens.next() {
        None => Ok(()),
        Some(TokenTree::Punct(p)) if p.as_char() == ',' => Ok(()),
        Some(other) => Err(error(other.span(), "#[openco::main]: expected `,` between options")),
    }
}

/// The annotated function, split where the expansion changes it.
struct MainFn {
    /// Attributes, visibility, `fn` and the name: kept as written.
    head: Vec<TokenTree>,
    /// The return type after `->`, if any.
    ret: Option<TokenStream>,
    body: Group,
}

impl MainFn {
    fn parse(item: TokenStream) -> Result<MainFn, Error> {
        let tokens: Vec<TokenTree> = item.into_iter().collect();
        let Some(fn_at) = tokens.iter().position(|t| is_ident(t, "fn")) else {
            return Err(error(Span::call_site(), "#[openco::main] goes on a function: `fn main() { ... }`"));
        };
        if let Some(token) = tokens[..fn_at].iter().find(|t| is_ident(t, "async")) {
            return Err(error(
                token.span(),
                "#[openco::main] takes a plain `fn`, not an `async fn`: the body runs in a coroutine, \
                 where blocking calls suspend it (use `openco::block_on` to await a future there)",
            ));
        }
        let name = match tokens.get(fn_at + 1) {
            Some(TokenTree::Ident(name)) => name.clone(),
            _ => return Err(error(tokens[fn_at].span(), "#[openco::main]: expected the function's name")),
        };
        let args = match tokens.get(fn_at + 2) {
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => g,
            Some(TokenTree::Punct(p)) if p.as_char() == '<' => {
                return Err(error(p.span(), "#[openco::main]: the function cannot be generic"))
            }
            _ => return Err(error(name.span(), "#[openco::main]: expected the function's argument list")),
        };
        if !args.stream().is_empty() {
            return Err(error(args.span(), "#[openco::main] takes a function without arguments"));
        }
        let body = match tokens.last() {
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace && tokens.len() > fn_at + 3 => g.clone(),
            _ => return Err(error(name.span(), "#[openco::main]: expected the function's body")),
        };
        let between = &tokens[fn_at + 3..tokens.len() - 1];
        let ret = match between {
            [] => None,
            [TokenTree::Punct(minus), TokenTree::Punct(gt), ty @ ..]
                if minus.as_char() == '-'
                    && minus.spacing() == Spacing::Joint
                    && gt.as_char() == '>'
                    && !ty.is_empty() =>
            {
                if let Some(token) = ty.iter().find(|t| is_ident(t, "where")) {
                    return Err(error(token.span(), "#[openco::main]: the function cannot have a `where` clause"));
                }
                if let Some(token) = ty.iter().find(|t| is_ident(t, "impl")) {
                    return Err(error(
                        token.span(),
                        "#[openco::main]: name the return type (`-> impl Trait` is not supported)",
                    ));
                }
                Some(ty.iter().cloned().collect())
            }
            [first, ..] => {
                return Err(error(first.span(), "#[openco::main]: expected `-> Type` or the function's body"))
            }
        };
        Ok(MainFn { head: tokens[..fn_at + 2].to_vec(), ret, body })
    }

    /// ```text
    /// #head() [-> ::std::process::ExitCode] {
    ///     [const _: () = ::core::assert!(S >= ::openco::MIN_STACK_SIZE, "...");]
    ///     ::openco::__private::main(&mut ::openco::Builder::new()[.workers(N)][.stack_size(S)],
    ///         move || -> RET_OR_UNIT BODY)[;]
    /// }
    /// ```
    fn expand(self, options: &Options) -> TokenStream {
        let mut inner = TokenStream::new();
        if let Some((bytes, span)) = options.stack_size {
            let check = format!(
                "const _: () = ::core::assert!({bytes}usize >= ::openco::MIN_STACK_SIZE, \
                 \"#[openco::main]: `stack_size` is below openco::MIN_STACK_SIZE\");"
            );
            inner.extend(respan(code(&check), span));
        }
        inner.extend(code("::openco::__private::main"));
        let mut builder = code("&mut ::openco::Builder::new()");
        for (method, option) in [("workers", options.workers), ("stack_size", options.stack_size)] {
            if let Some((value, span)) = option {
                let mut value = Literal::usize_unsuffixed(value);
                value.set_span(span);
                builder.extend(code(&format!(".{method}")));
                builder
                    .extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, TokenTree::Literal(value).into()))]);
            }
        }
        let mut args = builder;
        args.extend(code(", move || ->"));
        match &self.ret {
            Some(ty) => args.extend(ty.clone()),
            None => args.extend(code("()")),
        }
        args.extend([TokenTree::Group(self.body)]);
        inner.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, args))]);

        let mut out: TokenStream = self.head.into_iter().collect();
        out.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, TokenStream::new()))]);
        if self.ret.is_some() {
            out.extend(code("-> ::std::process::ExitCode"));
        } else {
            inner.extend([TokenTree::Punct(Punct::new(';', Spacing::Alone))]);
        }
        out.extend([TokenTree::Group(Group::new(Delimiter::Brace, inner))]);
        out
    }
}

fn is_ident(token: &TokenTree, name: &str) -> bool {
    matches!(token, TokenTree::Ident(ident) if ident.to_string() == name)
}

/// Tokens of fixed code, at the call site.
fn code(src: &str) -> TokenStream {
    src.parse().expect("openco-macros writes valid Rust")
}

/// `tokens` with every span (inside groups too) set to `span`, so that an error in them
/// points at the user's token.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), respan(group.stream(), span));
                new.set_span(span);
                TokenTree::Group(new)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}
