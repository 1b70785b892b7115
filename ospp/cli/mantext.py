"""The fixed text of the man pages (roff): what ``ospp.cli.docs`` puts around the sections it
generates from the click tree. ``{version}`` and ``{date}`` are filled in there.
"""

HEAD = r""".TH OSPP 1 "{date}" "ospp {version}" "User Commands"
.SH NAME
ospp \- rehearse Office volume activation (MAK, KMS, phone) on a simulated licence store
.SH SYNOPSIS
.B ospp
.BI / option [: value ]
.RI [ COMPUTERNAME ]
.br
.B ospp
.I command
.RI [ value ]
.RI [ COMPUTERNAME ]
.RB [ \-\-json ]
.br
.B ospp
.RB { center | kms }
.I subcommand
.RI [ options ]
.br
.B ospp
.RB { \-\-version | \-\-help }
.SH DESCRIPTION
.B ospp
speaks the command language of Microsoft's ospp.vbs against a simulated licence store, so
admins can script, test and rehearse Office volume activation on any machine. Its text output
copies ospp.vbs; every command also prints JSON with \fB\-\-json\fR, exits with a meaningful
status, and reports failures with the real licensing code (0xC004F074 and friends).
It never touches real Microsoft licensing.
.PP
Option names are case\-insensitive. \fB/?\fR, \fB/help\fR and \fB\-\-help\fR print help.
"""

EXIT_STATUS = r""".SH EXIT STATUS
.TP
.B 0
Success.
.TP
.B 1
The licensing check said no: an invalid key, a refused activation, a mismatched confirmation
ID. The licensing code is printed (ERROR CODE) and in the JSON (error.code). Also a reader
that went away before the output ended (\fBospp products | true\fR), as for any
click program.
.TP
.B 2
Usage error: an unknown option, a missing or malformed value.
.TP
.B 3
The licence store (or another local state file) cannot be used: unreadable, damaged, from a
newer ospp, or in a directory that cannot be written. The file is never overwritten. Also
standard output that cannot be written (\fB> /dev/full\fR, or closed: \fB>&\-\fR), with
ERROR CODE 0x80070070 (disk full) or 0x80070005 on standard error.
.TP
.B 4
A server (activation authority, KMS host, DNS server) could not be reached.
.TP
.B 70
Internal error (a bug). Rerun with OSPP_DEBUG=1 for the traceback.
.TP
.B 130
Cancelled with Ctrl+C (0x800704C7); nothing was changed, unless the message says
what stayed (an interrupted fleet create). The end of input at a prompt cancels
with status 1.
"""

ERROR_CODES = r""".SH ERROR CODES
Every licensing code ospp prints: after ERROR CODE in the text output, as error.code in the
JSON. Each is an HRESULT as the Software Licensing Service would report it, with the
description \fBospp /ddescr:\fR\fICODE\fR prints. Codes 0x4004xxxx are information (the
status of a licence), not failures.
"""

TAIL = r""".SH ENVIRONMENT
.TP
.B OSPP_HOME
Directory of the client state: one licence store per simulated machine. Default: the
platform's user data directory (platformdirs), for example ~/.local/share/ospp.
An empty value is an error (exit 2), as it is for the other directory variables.
.TP
.B OSPP_CENTER_HOME
Directory of the local activation authority. Default: $OSPP_HOME/center when OSPP_HOME is
set, else the user data directory plus /center.
.TP
.B OSPP_KMS_HOME
Directory of the KMS host run by \fBospp kms\fR. Default: $OSPP_HOME/kms when OSPP_HOME is
set, else the user data directory plus /kms.
.TP
.B OSPP_CENTER_DB
postgresql://USER@HOST:PORT/DB: keep the activation authority's records in
PostgreSQL, shared by several \fBospp center serve\fR nodes. Unset: SQLite in
OSPP_CENTER_HOME (\fBospp center init \-\-db URL\fR remembers a URL there).
.TP
.B OSPP_NOW
Simulated current time, ISO 8601 (2026\-06\-01T09:00:00Z); a time without a zone is UTC.
Use it to rehearse day 26 of grace or day 181 of a KMS activation. It is fixed for the
process and wins over the lab clock; an offset such as +7d or \-2h counts from the lab clock.
.TP
.B OSPP_CLOCK_FILE
The lab clock (\fBospp clock\fR) that clients, KMS hosts and the authority share; running
servers follow a change at their next request. Default: clock.json in OSPP_HOME.
.TP
.B OSPP_AUTHORITY
HOST:PORT of a remote activation authority (ospp center serve). Unset: the local authority
in OSPP_CENTER_HOME, which is then trusted. A remote one must be trusted first with
\fBospp trust add FILE\fR.
.TP
.B OSPP_DNS
ADDR[:PORT] of the nameserver KMS discovery asks (default: the resolver's configuration).
.TP
.B OSPP_RESOLV_CONF
A resolv.conf to read instead of the system's (its nameserver, domain and search list);
one that is not a readable text file is an error (0x80070057; 0x80070005 when
access is denied), and nothing is recorded.
.TP
.B OSPP_USER
Run as this standard (non\-administrator) user of the simulated machine.
Unset, or Administrator (also DOMAIN\\Administrator), means an administrator;
an empty value is an error (exit 2). A standard user may read everything, but installing keys,
activating, rearming and changing settings get 0xC004F025 unless an
administrator allowed them with /puserops. /puserops, /duserops,
/osppsvcauto, /osppsvcrestart, changing the KMS host (its keys, activation
and settings: ospp kms install-key, uninstall-key, activate, actcid, set,
dns set, enable, disable, publish; slmgr /ipk, /upk, /ato, /atp of a host
key, /sprt, /sai, /sri, /sdns, /cdns, /spri, /cpri) and the fleet commands
that change machines always need an administrator; reading the KMS host
does not.
.TP
.B OSPP_DEBUG
Print a traceback for internal errors.
.SH FILES
.TP
.I $OSPP_HOME/machines/NAME/licenses.db
The licence store of simulated machine NAME (localhost by default): SQLite, owner\-only.
.TP
.I $OSPP_HOME/machines/NAME/hardware.json
The simulated hardware of machine NAME (ospp hardware change).
.TP
.I $OSPP_HOME/trust/*.json
Trusted activation authority public keys.
.TP
.I $OSPP_HOME/seal.key
The key sealing activations already verified, so status reads skip their signatures. Whoever
can write the stores can read it and re\-seal an edited activation; /dstatus \-\-verify
checks every signature regardless of the seals.
.TP
.I $OSPP_CENTER_HOME/center.db, authority\-*.pem, authority.pub.json
The activation authority: its records, private keys (owner\-only) and public key file.
.TP
.I $OSPP_KMS_HOME/kms.db, host\-ed25519.pem
The KMS host: its key, certificate, client counts and request statistics; its signing key.
.SH EXAMPLES
.nf
ospp install\-product ProPlus2021
ospp /dstatus
ospp /inpkey:XQNVK\-8JYDB\-WJ9W3\-YJ8YR\-WFG99 PC01
ospp dstatus PC01 \-\-json
ospp /sethst:kms1.example.com:1688
ospp /ddescr:0xC004F074
ospp center issue\-key \-\-product ProPlus2021 \-\-limit 10
ospp /inpkey:KEY \-\-act
ospp /dinstid
ospp center confirm IID
ospp /actcid:CID
ospp kms install\-key HOSTKEY && ospp kms activate
ospp kms serve \-\-listen 0.0.0.0:1688
ospp /sethst:kms1.example.com && ospp /act
OSPP_NOW=2027\-01\-10 ospp service \-\-all
ospp kms dns set \-\-server 192.0.2.53 \-\-domain corp.example
ospp kms dns set \-\-hostname kms1.corp.example \-\-tsig\-keyfile kms.key
ospp /skms\-domain:corp.example && ospp dnsdiag
OSPP_NOW=2026\-12\-31 ospp /dstatus
ospp /dstatus \-\-verify
ospp /kms\-policy:online\-only
.fi
.SH SEE ALSO
.BR slmgr (1);
the README of ospp; docs/THREAT\-MODEL.md (what is authenticated, against whom, and what a
store's owner can always do) and docs/PHONE.md; Microsoft's documentation of ospp.vbs and
slmgr.vbs.
"""

SLMGR_HEAD = r""".TH SLMGR 1 "{date}" "ospp {version}" "User Commands"
.SH NAME
slmgr \- slmgr.vbs's options against ospp's simulated licence store
.SH SYNOPSIS
.B slmgr
.BI / option
.RI [ value " ...] [" ActID "] [" COMPUTERNAME ]
.RB [ \-\-json ]
.br
.B slmgr
.I COMPUTERNAME
.RI [ USER " " PASSWORD ]
.BI / option
.RI [ value " ...] [" ActID ]
.RB [ \-\-json ]
.SH DESCRIPTION
.B slmgr
is installed with
.BR ospp (1)
and is the same as \fBospp slmgr\fR: the options of Microsoft's slmgr.vbs,
against the simulated licence store and KMS host of ospp. It never touches real
Microsoft licensing.
.PP
.B slmgr
takes
"""

SLMGR_TAIL = r""".SH ENVIRONMENT
The variables of
.BR ospp (1)
apply: OSPP_HOME, OSPP_KMS_HOME, OSPP_NOW, OSPP_USER and the rest.
.SH SEE ALSO
.BR ospp (1);
docs/SLMGR.md; Microsoft's documentation of slmgr.vbs.
"""

SLMGR_RULES = (
    "slmgr.vbs's options with space\\-separated values, in any "
    "case, with / or \\-. The computer name comes last, or first as in slmgr.vbs: slmgr "
    "COMPUTERNAME [USER PASSWORD] /option ...; USER and PASSWORD are accepted and ignored, "
    "with a note on stderr (simulated machines need no login). An ActID is the SKU id of "
    "a catalog licence; a word that is a GUID is the ActID, any other the computer name. "
    "Without one an option acts on the "
    "licence whose key was installed last, or on this machine's KMS host once a KMS host "
    "key is installed. The formats are in docs/SLMGR.md. slmgr.vbs exits with the "
    "HRESULT; these exit with the statuses below and print the HRESULT on the Error: line."
)
