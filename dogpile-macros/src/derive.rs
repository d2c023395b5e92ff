//! `#[derive(CacheKey)]`: structs as `{field=value,...}` or `(a,b)` (a
//! one-field tuple struct is transparent), enums as the variant's name
//! followed by its fields.

use crate::ctx::Ctx;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Ident, Path, parse_quote};

struct FieldKey {
    /// `name=` for named fields.
    label: Option<String>,
    access: TokenStream,
}

/// Reads `#[cache_key(...)]` on the type: `crate = "path"`.
fn container(ctx: &mut Ctx, input: &DeriveInput) -> TokenStream {
    let mut krate = quote!(::dogpile);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("cache_key")) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let s: syn::LitStr = meta.value()?.parse()?;
                let p: Path = s.parse()?;
                krate = quote!(#p);
                Ok(())
            } else {
                Err(meta.error("unknown `cache_key` option on a type; expected `crate = \"...\"`"))
            }
        });
        if let Err(e) = r {
            ctx.syn_error(e);
        }
    }
    krate
}

/// Whether a field carries `#[cache_key(skip)]`.
fn skipped(ctx: &mut Ctx, field: &syn::Field) -> bool {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("cache_key")) {
        let r = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("unknown `cache_key` option on a field; expected `skip`"))
            }
        });
        if let Err(e) = r {
            ctx.syn_error(e);
        }
    }
    skip
}

/// The keyed fields of `fields`, accessed through `access(i, field)`.
fn keyed(ctx: &mut Ctx, fields: &Fields, access: impl Fn(usize, &syn::Field) -> TokenStream) -> Vec<FieldKey> {
    fields
        .iter()
        .enumerate()
        .filter(|(_, f)| !skipped(ctx, f))
        .map(|(i, f)| FieldKey { label: f.ident.as_ref().map(|id| format!("{}=", id.unraw())), access: access(i, f) })
        .collect()
}

/// Writes `{a=..,b=..}` or `(..,..)`; a one-field tuple is transparent
/// when `transparent`.
fn write_fields(
    krate: &TokenStream,
    out: &Ident,
    fields: &Fields,
    keys: &[FieldKey],
    transparent: bool,
) -> TokenStream {
    let write = |k: &FieldKey| {
        let access = &k.access;
        let label = k.label.as_ref().map(|l| quote!(#out.push_str(#l);));
        quote!(#label #krate::CacheKey::write_key(#access, #out);)
    };
    match fields {
        Fields::Unit => quote!(#out.push_str("()");),
        Fields::Unnamed(u) if transparent && u.unnamed.len() == 1 && keys.len() == 1 => write(&keys[0]),
        _ => {
            let (open, close) = if matches!(fields, Fields::Named(_)) { ('{', '}') } else { ('(', ')') };
            let parts = keys.iter().enumerate().map(|(i, k)| {
                let sep = (i > 0).then(|| quote!(#out.push(',');));
                let w = write(k);
                quote!(#sep #w)
            });
            quote! {
                #out.push(#open);
                #(#parts)*
                #out.push(#close);
            }
        }
    }
}

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let mut ctx = Ctx::default();
    let krate = container(&mut ctx, &input);
    let out = Ident::new("__dogpile_out", Span::mixed_site());
    let body = match &input.data {
        Data::Struct(s) => {
            let keys = keyed(&mut ctx, &s.fields, |i, f| match &f.ident {
                Some(id) => quote!(&self.#id),
                None => {
                    let index = syn::Index::from(i);
                    quote!(&self.#index)
                }
            });
            write_fields(&krate, &out, &s.fields, &keys, true)
        }
        Data::Enum(e) => {
            let arms = e.variants.iter().map(|v| {
                let name = &v.ident;
                let text = name.unraw().to_string();
                let binding = |i: usize, f: &syn::Field| match &f.ident {
                    Some(id) => format_ident!("__dogpile_{}", id.unraw()),
                    None => format_ident!("__dogpile_{}", i),
                };
                let keys = keyed(&mut ctx, &v.fields, |i, f| {
                    let b = binding(i, f);
                    quote!(#b)
                });
                let pattern = match &v.fields {
                    Fields::Unit => quote!(),
                    Fields::Named(n) => {
                        let pats = n.named.iter().enumerate().map(|(i, f)| {
                            let id = &f.ident;
                            let b = binding(i, f);
                            quote!(#id: #b)
                        });
                        quote!({ #(#pats),* })
                    }
                    Fields::Unnamed(u) => {
                        let pats = u.unnamed.iter().enumerate().map(|(i, f)| binding(i, f));
                        quote!(( #(#pats),* ))
                    }
                };
                let fields = match &v.fields {
                    Fields::Unit => quote!(),
                    other => write_fields(&krate, &out, other, &keys, false),
                };
                quote! {
                    #[allow(unused_variables)]
                    Self::#name #pattern => {
                        #out.push_str(#text);
                        #fields
                    }
                }
            });
            let arms: Vec<_> = arms.collect();
            if arms.is_empty() { quote!(match *self {}) } else { quote!(match self { #(#arms)* }) }
        }
        Data::Union(u) => {
            ctx.error(u.union_token, "`CacheKey` cannot be derived for a union: write the impl by hand");
            TokenStream::new()
        }
    };
    if ctx.has_errors() {
        return ctx.into_compile_errors();
    }
    let name = &input.ident;
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(parse_quote!(#krate::CacheKey));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::CacheKey for #name #ty_generics #where_clause {
            fn write_key(&self, #out: &mut #krate::__private::String) {
                #body
            }
        }
    }
}
