"""``cvmlaunch report check``: an attestation report against a launch log or a reference set.

Reads the report (an SEV-SNP ATTESTATION_REPORT as the firmware and ``snpguest report`` write
it, or a TDX quote v4/v5), the reference values (``--log``: replayed when SNP, as
``reference-values LOG`` does; or ``--reference-values``: what ``reference-values`` printed as
JSON, one launch or a set) and optionally the VCEK and AMD chain; compares, verifies, prints.
Every failed check is listed, then the command exits 1. No network access is made.
"""

from __future__ import annotations

import json
from typing import Any

import click

from cvmlaunch.cli._params import FILE, json_option
from cvmlaunch.errors import CheckFailed, ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cvmlaunch.attest import Expected, SnpReport

__all__ = ["REPORT", "REPORT_CHECK"]

#: Largest report or quote read (a TDX quote with its certification data is a few KiB).
_REPORT_LIMIT = 1 << 20


@click.command(
    "check",
    short_help="Check an SNP report or TDX quote against a launch log or a reference set.",
    help="""Check the attestation REPORT against what a launch log (--log) or a reference-value
file (--reference-values: the JSON of `cvmlaunch reference-values`, one launch or a set)
predicts. REPORT is an SEV-SNP ATTESTATION_REPORT (versions 2 to 5; binary, as `snpguest
report` writes it, or as hex or base64 text) or a TDX quote (versions 4 and 5).

Compared: SEV-SNP MEASUREMENT (any digest of a set), POLICY, HOST_DATA, and with an ID block
FAMILY_ID, IMAGE_ID, GUEST_SVN, ID_KEY_DIGEST, AUTHOR_KEY_EN, AUTHOR_KEY_DIGEST; TDX MRTD,
MRCONFIGID, MROWNER, MROWNERCONFIG. Fields nothing predicts (REPORT_DATA, TCB values, RTMRs)
are not compared.

--vcek verifies the SNP report's ECDSA P-384 signature; --cert-chain checks the VCEK against
the ARK and ASK given (RSA-PSS, as AMD signs). Both are files you obtained beforehand: no
network access is made, ever, and the ARK given is trusted as is (compare its fingerprint with
AMD's). TDX quote signatures are not verified: that needs Intel's collateral (use
go-tdx-guest's check or Intel's QVL).

Exit 0 when everything checked holds, 1 naming each field or signature that does not, 2 for a
malformed report or input.""",
)
@click.argument("report", type=FILE)
@click.option("--log", "log", type=FILE, help="a launch log (docs/log-format.md)")
@click.option(
    "--reference-values",
    "reference",
    type=FILE,
    help="JSON from `cvmlaunch reference-values` (one launch, or a set)",
)
@click.option("--vcek", type=FILE, help="VCEK (or VLEK) certificate, PEM or DER")
@click.option("--cert-chain", "cert_chain", type=FILE, help="ASK and ARK certificates, PEM")
@json_option("print the outcome as JSON")
def REPORT_CHECK(  # noqa: N802
    report: str,
    log: str | None,
    reference: str | None,
    vcek: str | None,
    cert_chain: str | None,
    as_json: bool,
) -> None:
    """Run ``report check``."""
    from cvmlaunch import attest
    from cvmlaunch.files import read_small

    if (log is None) == (reference is None):
        raise ConfigError("give exactly one of --log LOG or --reference-values FILE")
    if cert_chain is not None and vcek is None:
        raise ConfigError("--cert-chain checks the VCEK: give --vcek too")
    parsed = attest.parse_report(read_small(report, "report", _REPORT_LIMIT), name=report)
    is_snp = isinstance(parsed, attest.SnpReport)
    if vcek is not None and not is_snp:
        raise ConfigError(
            "--vcek is for SEV-SNP reports; TDX quote signatures are not verified here "
            "(they need Intel's collateral)"
        )
    expected = _expected(log, reference)
    comparison = attest.compare_report(parsed, expected)
    checks: list[dict[str, Any]] = []
    different = {d.field: d for d in comparison.differences}
    for field in comparison.checked:
        d = different.get(field)
        checks.append(
            {"check": field, "ok": True}
            if d is None
            else {"check": field, "ok": False, "expected": d.expected, "got": d.got}
        )
    if vcek is not None and isinstance(parsed, attest.SnpReport):
        checks += _signatures(parsed, vcek, cert_chain)
    failed = [c["check"] for c in checks if not c["ok"]]
    kind = (
        f"SEV-SNP attestation report v{parsed.version}"
        if is_snp
        else f"TDX quote v{parsed.version}"
    )
    matched = [c.as_dict() for c in comparison.matched]
    if as_json:
        doc = {
            "report": report,
            "kind": kind,
            "ok": not failed,
            "checks": checks,
            "matched_configurations": matched,
            "signature_checked": vcek is not None,
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(f"{report}: {kind}")
        for c in checks:
            if c["ok"]:
                click.echo(f"  {c['check']}: ok{_detail(c)}")
            else:
                reason = c.get("reason") or f"expected {c['expected']}, got {c['got']}"
                click.echo(f"  {c['check']}: DIFFERS: {reason}")
        for configuration in comparison.matched:
            click.echo(f"  matches: {configuration.describe()}")
        if vcek is None:
            click.echo(
                "  signature: not checked (no --vcek)"
                if is_snp
                else "  signature: not checked (TDX quotes need Intel's collateral)"
            )
        click.echo("OK" if not failed else "FAILED")
    if failed:
        raise CheckFailed(f"{report}: does not hold: {', '.join(failed)}")


def _detail(check: dict[str, Any]) -> str:
    detail = check.get("detail")
    return f" ({detail})" if detail else ""


def _expected(log: str | None, reference: str | None) -> Expected:
    from cvmlaunch import attest

    if log is not None:
        from cvmlaunch.files import read_log
        from cvmlaunch.measure.log import replay_if_possible
        from cvmlaunch.measure.reference import ReferenceValues

        parsed_log = read_log(log)
        replay_if_possible(parsed_log)
        return attest.expected_from_values(ReferenceValues.from_log(parsed_log))
    assert reference is not None
    from cvmlaunch.files import read_small

    data = read_small(reference, "reference values", 256 << 20)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{reference}: not UTF-8 text") from None
    return attest.expected_from_document(text, name=reference)


def _signatures(parsed: SnpReport, vcek: str, cert_chain: str | None) -> list[dict[str, Any]]:
    from cvmlaunch import attest
    from cvmlaunch.files import read_small

    cert = attest.load_certificate(read_small(vcek, "VCEK certificate"), name=vcek)
    out: list[dict[str, Any]] = []
    try:
        attest.verify_snp_signature(parsed, cert, name=vcek)
        out.append(
            {"check": "signature", "ok": True, "detail": f"VCEK {cert.subject.rfc4514_string()}"}
        )
    except attest.SignatureInvalid as exc:
        out.append({"check": "signature", "ok": False, "reason": str(exc)})
    if cert_chain is not None:
        chain = attest.load_certificates(
            read_small(cert_chain, "certificate chain"), name=cert_chain
        )
        try:
            ark, ask = attest.verify_vcek_chain(cert, chain, name=cert_chain)
            detail = f"ARK {ark.subject.rfc4514_string()}, ASK {ask.subject.rfc4514_string()}"
            out.append({"check": "cert_chain", "ok": True, "detail": detail})
        except attest.SignatureInvalid as exc:
            out.append({"check": "cert_chain", "ok": False, "reason": str(exc)})
    return out


REPORT = click.Group(
    "report",
    commands=[REPORT_CHECK],
    short_help="Check attestation reports (SEV-SNP, TDX) offline against reference values.",
    help="Check attestation reports (SEV-SNP, TDX) offline against reference values. "
    "No network access is made.",
    no_args_is_help=True,
)
