# The file protocol: what sandboxd's file operations and commands run in a
# context's container, as the context's user, so that the kernel's
# permissions hold and symlinks resolve as the kernel sees them. The daemon
# sends this script with every exec (see fileproto.Command), so it works in
# any image with a POSIX sh and GNU coreutils and findutils:
#
#	sh -c SCRIPT sandboxd OP WORKDIR PATH [ARG...]
#
# PATH is relative to WORKDIR and already checked by the daemon (no .., not
# absolute). What the script reports goes to stdout, fields separated by /
# (which no file name holds) and records ended by NUL (which no path holds).
# A file's description is find's %y/%s/%m/%T@: type, size, octal mode and
# mtime, of what a symlink points to.
#
# It fails with one of these exit codes, named in fileproto.go; the message
# on stderr is for the daemon's log:
#
#	1   anything else: an unknown OP, a path that cannot be resolved
#	10  PATH resolves outside WORKDIR
#	11  PATH does not exist
#	12  PATH is a directory (or, for commit, cannot be replaced)
#	13  PATH, or a parent of it, is not a directory
#	14  PATH is not accessible to the user
#	15  WORKDIR does not exist
#	16  write could not write: the disk is full or the file too large
#	17  read: PATH is not a regular file (a FIFO, socket or device)
#
# The checks are not a security boundary: the user could race them, but
# gains nothing, as everything runs with the rights its code has anyway.
# They keep clients from reaching outside the working dir by accident.
set -u
fail() { printf '%s\n' "$2" >&2; exit "$1"; }
root=$(realpath -e -- "$2" 2>/dev/null) || fail 15 "the working dir $2 does not exist"
inside() { case "$1" in "$root"|"$root"/*) return 0;; esac; return 1; }
resolve() {
	t=$(realpath -m -- "$root/$1") || fail 1 "cannot resolve $1"
	inside "$t" || fail 10 "$1 resolves to $t"
}
entry() { find -L "$1" -maxdepth 0 -printf '%y/%s/%m/%T@'; }
op=$1
shift 2
case $op in
# read PATH: the description of the file and a NUL, then its bytes.
read)
	resolve "$1"
	[ -e "$t" ] || fail 11 "$t does not exist"
	[ -d "$t" ] && fail 12 "$t is a directory"
	# A FIFO would block the open, a device or socket never end.
	[ -f "$t" ] || fail 17 "$t is not a regular file"
	[ -r "$t" ] || fail 14 "$t is not readable"
	e=$(entry "$t") || fail 1 "cannot stat $t"
	size=${e#*/}
	printf '%s\000' "$e"
	# Non-blocking, should the file have become a FIFO since the check:
	# the open then does not wait for a writer.
	exec dd if="$t" iflag=nonblock,count_bytes count="${size%%/*}" bs=128K status=none
	;;
# write PATH: stdin to a new temporary file beside PATH; its name and a
# NUL, then the count of bytes written.
write)
	resolve "$1"
	[ "$t" = "$root" ] && fail 12 "$t is the working dir"
	[ -d "$t" ] && fail 12 "$t is a directory"
	d=${t%/*}
	err=$(mkdir -p -- "$d" 2>&1) || case $err in
		# mkdir -p says "File exists" where a parent is a file.
		*"Not a directory"* | *"File exists"*) fail 13 "$err" ;;
		*) fail 14 "$err" ;;
	esac
	tmp=$(mktemp "$d/.sandboxd-upload.XXXXXX") || fail 14 "cannot write in $d"
	printf '%s\000' "$tmp"
	cat >"$tmp" || { rm -f -- "$tmp"; fail 16 "cannot write $tmp"; }
	# Not stat: gVisor's statx refuses the flags coreutils passes.
	find "$tmp" -maxdepth 0 -printf '%s'
	;;
# commit PATH TMP: TMP in place of PATH, with PATH's mode; its description.
commit)
	resolve "$1"
	tmp=$2
	if [ -e "$t" ]; then chmod --reference="$t" -- "$tmp"; else chmod 0644 -- "$tmp"; fi
	# On failure the daemon removes $tmp (abort), whatever failed.
	mv -fT -- "$tmp" "$t" || fail 12 "cannot replace $t"
	entry "$t"
	;;
# abort PATH TMP: removes TMP.
abort)
	rm -f -- "$2"
	;;
# list PATH: for each entry of the directory PATH, its description, /, its
# name and a NUL.
list)
	resolve "$1"
	[ -e "$t" ] || fail 11 "$t does not exist"
	[ -d "$t" ] || fail 13 "$t is not a directory"
	[ -r "$t" ] && [ -x "$t" ] || fail 14 "$t is not readable"
	find -L "$t" -mindepth 1 -maxdepth 1 -printf '%y/%s/%m/%T@/%f\000' 2>/dev/null
	exit 0
	;;
# delete PATH: removes PATH, a directory with all it holds, a symlink
# itself.
delete)
	case $1 in */*) parent=${1%/*} ;; *) parent=. ;; esac
	resolve "$parent"
	t=$t/${1##*/}
	[ -e "$t" ] || [ -L "$t" ] || fail 11 "$t does not exist"
	rm -rf -- "$t" || fail 14 "cannot delete $t"
	;;
# run PATH CMD [ARG...]: a NUL once PATH has passed the checks, then CMD
# run in PATH.
run)
	resolve "$1"
	[ -e "$t" ] || fail 11 "$t does not exist"
	[ -d "$t" ] || fail 13 "$t is not a directory"
	cd -- "$t" || fail 14 "cannot enter $t"
	# The mark: what stderr holds from now on is the command's.
	printf '\000'
	shift
	exec "$@"
	;;
*)
	fail 1 "unknown operation $op"
	;;
esac
