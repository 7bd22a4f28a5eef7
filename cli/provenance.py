"""Provenance commands: ``keys init``, ``keys show``, ``sign`` and ``verify``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.context import Settings, emit_json, pass_settings, per_file


def signer_options(fn):
    """Who signs: the key folder of 'sfumato keys init', or your own PEM certificate chain + key."""
    fn = click.option("--tsa-url", help="RFC 3161 time-stamp authority (signatures then outlive "
                      "the certificate; needs network).")(fn)
    fn = click.option("--key", type=click.Path(dir_okay=False),
                      help="Your private key (PEM) for --cert.")(fn)
    fn = click.option("--cert", type=click.Path(dir_okay=False),
                      help="Your certificate chain (PEM, leaf first) instead of the key folder.")(fn)
    fn = click.option("--keys-dir", type=click.Path(file_okay=False), envvar="SFUMATO_KEYS_DIR",
                      help="Key folder (default ~/.config/sfumato/keys; env SFUMATO_KEYS_DIR).")(fn)
    return fn


def make_identity(keys_dir: str | None, cert: str | None, key: str | None):
    """The signing identity the options describe (passphrase from $SFUMATO_KEY_PASSPHRASE)."""
    from generator.provenance import ProvenanceError, SigningIdentity

    if cert or key:
        if not (cert and key):
            raise ProvenanceError("--cert and --key go together")
        return SigningIdentity.from_files(cert, key)
    return SigningIdentity.from_keys_dir(keys_dir)


@click.group()
def keys():
    """Create or show the local C2PA signing keys."""


@keys.command("init")
@click.option("--dir", "directory", type=click.Path(file_okay=False), envvar="SFUMATO_KEYS_DIR",
              help="Where to put the keys (default ~/.config/sfumato/keys).")
@click.option("--name", default="sfumato signer", show_default=True, help="Signer common name.")
@click.option("--org", default="sfumato (local)", show_default=True, help="Organisation name.")
@click.option("--encrypt", is_flag=True, help="Encrypt the private keys with a passphrase "
              "(prompted, or $SFUMATO_KEY_PASSPHRASE).")
@click.option("--force", is_flag=True, help="Replace existing keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the certificates as JSON.")
def keys_init(directory, name, org, encrypt, force, as_json):
    """Make a local root CA and an ES256 signing certificate (valid 10 years; keys 0600).

    Without a time-stamp authority a C2PA signature is checked against the present, so files
    signed with this key verify until the certificate expires; the long validity is deliberate.
    """
    import os

    from generator.provenance import init_keys
    from generator.provenance.keys import PASSPHRASE_ENV

    passphrase = None
    if encrypt:
        passphrase = os.environ.get(PASSPHRASE_ENV) or click.prompt(
            "passphrase", hide_input=True, confirmation_prompt=True, err=True)
    info = init_keys(directory, passphrase, name, org, force)
    if as_json:
        emit_json(info)
        return
    _print_keys(info)
    click.echo("private keys are readable by you only (0600) and never leave this folder")


def _print_keys(info: dict) -> None:
    click.echo(f"keys in {info['dir']}")
    for role in ("signer", "ca"):
        c = info.get(role)
        if c:
            state = "valid" if c["valid_now"] else "NOT VALID NOW"
            click.echo(f"  {role}: {c['subject']}\n    issuer {c['issuer']}\n    sha256 {c['sha256']}\n"
                       f"    valid {c['not_before'][:10]} .. {c['not_after'][:10]} ({state}, "
                       f"{c['days_left']} days left)")


@keys.command("show")
@click.option("--dir", "directory", type=click.Path(file_okay=False), envvar="SFUMATO_KEYS_DIR",
              help="Key folder (default ~/.config/sfumato/keys).")
@click.option("--json", "as_json", is_flag=True, help="Print the certificates as JSON.")
def keys_show(directory, as_json):
    """Show the signing certificate and CA: subject, fingerprints, expiry (never the keys)."""
    from generator.provenance import describe_keys

    info = describe_keys(directory)
    if as_json:
        emit_json(info)
    else:
        _print_keys(info)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", type=click.Path(), help="Output file (one input) or folder; "
              "default: sign in place.")
@signer_options
@click.option("--title", help="Manifest title (default: the output's file name).")
@click.option("--ingredient", "ingredients", multiple=True, type=click.Path(exists=True),
              help="Source picture to attach as an ingredient (repeatable).")
@click.option("--generation", type=click.Path(exists=True, dir_okay=False),
              help="JSON file with the generation parameters for sfumato's assertion.")
@click.option("--thumbnail", is_flag=True, help="Embed a thumbnail (slower; off by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_settings
def sign(settings: Settings, files, out, keys_dir, cert, key, tsa_url, title, ingredients,
         generation, thumbnail, as_json):
    """Sign images or videos with a C2PA manifest (mp4, mov, png, jpeg, webp, ...).

    A file that is already signed keeps its manifest as a parent ingredient.
    """
    from generator.provenance import ProvenanceError, sign_file

    identity = make_identity(keys_dir, cert, key)
    gen = json.loads(Path(generation).read_text()) if generation else None
    if out and len(files) > 1 and not Path(out).is_dir():
        raise ProvenanceError("with several files, --out must be an existing folder")
    def one(f):
        dst = Path(out) / Path(f).name if out and Path(out).is_dir() else (out or f)
        return sign_file(f, identity, dst, gen, title, list(ingredients), thumbnail, tsa_url)

    def report(r):
        kept = " (earlier manifest kept as parent)" if r["parent_kept"] else ""
        click.echo(f"signed {r['output']}{kept}")

    results, failures = per_file(files, one, as_json, report)
    if as_json:
        emit_json({"results": results, "failed": failures})
    if failures:
        raise SystemExit(3 if results else 1)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--trust", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Trust anchor PEM file (repeatable); the local CA is trusted too unless "
                   "--no-local-ca.")
@click.option("--no-local-ca", is_flag=True, help="Do not trust the CA of 'sfumato keys init'.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def verify(files, trust, no_local_ca, as_json):
    """Check C2PA manifests: Trusted / Valid (untrusted signer) / Invalid / Absent / Unsupported.

    Exit status: 0 all Trusted; otherwise the worst state: 10 Valid, 11 Absent, 12 Unsupported,
    13 Invalid; 1 when a file cannot be read.
    """
    from generator.provenance import exit_code, verify_file

    results, failures = per_file(files, lambda f: verify_file(f, list(trust), not no_local_ca),
                                 as_json, _print_verification)
    if as_json:
        emit_json({"results": [r.to_dict() for r in results], "failed": failures})
    code = 1 if failures else exit_code(results)
    if code:
        raise SystemExit(code)


def _print_verification(v) -> None:
    line = f"{v.path}: {v.state}"
    if v.codes and v.state != "Trusted":
        line += f" ({', '.join(v.codes)})"
    elif v.message and v.state in ("Absent", "Unsupported"):
        line += f" ({v.message})"
    click.echo(line)
    if v.signer:
        click.echo(f"  signed by {v.signer.get('common_name')} / {v.signer.get('issuer')}; "
                   f"generator {v.claim_generator}; actions {', '.join(v.actions)}")
        if v.signer.get("cert_sha256"):  # names can be copied; compare these with 'keys show'
            click.echo(f"  signer certificate sha256 {v.signer['cert_sha256']}")
            click.echo(f"  issuer certificate sha256 {v.signer.get('issuer_sha256', 'not in the file')}")
    if v.parents:
        click.echo(f"  {v.parents} earlier manifest(s) kept as parent ingredient(s)")
    if v.generation:
        shown = {k: v.generation[k] for k in v.generation if k not in ("generator", "version")}
        click.echo(f"  sfumato generation: {json.dumps(shown)}")
