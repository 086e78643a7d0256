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
#	18  mkdir, move: PATH, or DEST, exists and cannot be replaced, or DEST
#	    lies in PATH
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
# below PATH: t is PATH with its parent resolved but not its last name, so
# that a symlink there is the link itself.
below() {
	case $1 in */*) resolve "${1%/*}" ;; *) resolve . ;; esac
	t=$t/${1##*/}
}
# mkdirs DIR [MODE]: mkdir -p DIR, with MODE for DIR itself.
mkdirs() {
	err=$(mkdir -p ${2:+-m "$2"} -- "$1" 2>&1) || case $err in
		# mkdir -p says "File exists" where a parent is a file.
		*"Not a directory"* | *"File exists"*) fail 13 "$err" ;;
		*) fail 14 "$err" ;;
	esac
}
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
	mkdirs "$d"
	tmp=$(mktemp "$d/.sandboxd-upload.XXXXXX") || fail 14 "cannot write in $d"
	printf '%s\000' "$tmp"
	cat >"$tmp" || { rm -f -- "$tmp"; fail 16 "cannot write $tmp"; }
	# Not stat: gVisor's statx refuses the flags coreutils passes.
	find "$tmp" -maxdepth 0 -printf '%s'
	;;
# commit PATH TMP [MODE]: TMP in place of PATH, with the octal MODE, else
# PATH's mode, else 0644; its description.
commit)
	resolve "$1"
	tmp=$2
	if [ -n "${3:-}" ]; then
		chmod "$3" -- "$tmp"
	elif [ -e "$t" ]; then
		chmod --reference="$t" -- "$tmp"
	else
		chmod 0644 -- "$tmp"
	fi
	# On failure the daemon removes $tmp (abort), whatever failed.
	mv -fT -- "$tmp" "$t" || fail 12 "cannot replace $t"
	entry "$t"
	;;
# abort PATH TMP: removes TMP.
abort)
	rm -f -- "$2"
	;;
# list PATH DEPTH LIMIT: for each entry of the directory PATH and of its
# subdirectories down to DEPTH levels, its description, /, its path below
# PATH and a NUL; no more than LIMIT entries. A symlink is described by
# what it points to but not entered, so that the walk stays in WORKDIR.
list)
	resolve "$1"
	[ -e "$t" ] || fail 11 "$t does not exist"
	[ -d "$t" ] || fail 13 "$t is not a directory"
	[ -r "$t" ] && [ -x "$t" ] || fail 14 "$t is not readable"
	find -L "$t" -mindepth 1 -maxdepth "$2" -printf '%y/%s/%m/%T@/%P\000' \( -xtype l -prune -o -true \) 2>/dev/null |
		head -z -n "$3"
	exit 0
	;;
# stat PATH: the description of PATH.
stat)
	resolve "$1"
	[ -e "$t" ] || fail 11 "$t does not exist"
	entry "$t" || fail 14 "cannot stat $t"
	;;
# mkdir PATH MODE PARENTS: makes the directory PATH with the octal MODE,
# and with PARENTS "1" its missing parents too, where a directory at PATH
# already is no failure (mkdir -p); its description.
mkdir)
	resolve "$1"
	if [ "$3" = 1 ] && [ -d "$t" ]; then
		:
	elif [ -e "$t" ]; then
		fail 18 "$t exists"
	elif [ "$3" = 1 ]; then
		mkdirs "$t" "$2"
	else
		[ -e "${t%/*}" ] || fail 11 "the parent of $t does not exist"
		[ -d "${t%/*}" ] || fail 13 "the parent of $t is not a directory"
		mkdir -m "$2" -- "$t" 2>/dev/null || fail 14 "cannot make $t"
	fi
	entry "$t"
	;;
# move PATH DEST: renames PATH to DEST, also relative to WORKDIR, and makes
# DEST's missing parents. A file at DEST is replaced, a directory is not.
# A symlink is moved itself. DEST's description.
move)
	below "$1"
	src=$t
	[ -e "$src" ] || [ -L "$src" ] || fail 11 "$src does not exist"
	below "$2"
	case $t/ in "$src"/*) fail 18 "$t is $src or lies in it" ;; esac
	[ -d "$t" ] && fail 18 "$t is a directory"
	[ -d "$src" ] && { [ -e "$t" ] || [ -L "$t" ]; } && fail 18 "$t exists"
	mkdirs "${t%/*}"
	mv -fT -- "$src" "$t" 2>/dev/null || fail 14 "cannot move $src to $t"
	entry "$t"
	;;
# delete PATH: removes PATH, a directory with all it holds, a symlink
# itself.
delete)
	below "$1"
	[ -e "$t" ] || [ -L "$t" ] || fail 11 "$t does not exist"
	rm -rf -- "$t" || fail 14 "cannot delete $t"
	;;
# processes PATH LIMIT: this exec's pid, which leads its session; the boot
# time in seconds; clock ticks a second; the page size in bytes;
# /etc/passwd; then for each process, no more than LIMIT, its
# pid, uid, /proc/PID/stat and the first 2 KiB of its command line with
# spaces for NULs. Each ends with a NUL. PATH is not used.
processes)
	printf '%s\000' "$$" "$(sed -n 's/^btime //p' /proc/stat)" "$(getconf CLK_TCK)" "$(getconf PAGESIZE)" "$(cat /etc/passwd 2>/dev/null)"
	n=0
	for d in /proc/[0-9]*; do
		[ "$n" -lt "$2" ] || break
		# A process may end at any time: skip it then.
		st=$(cat "$d/stat" 2>/dev/null) || continue
		uid=$(find "$d" -maxdepth 0 -printf '%U' 2>/dev/null) || continue
		cmd=$(head -c 2048 "$d/cmdline" 2>/dev/null | tr '\000' ' ')
		printf '%s\000' "${d#/proc/}" "$uid" "$st" "$cmd"
		n=$((n + 1))
	done
	;;
# kill PATH PID START: kills PID with SIGKILL if it is the process that
# started START clock ticks after boot, not one that took its pid since.
# PATH is not used.
kill)
	pid=$2 start=$3
	st=$(cat "/proc/$pid/stat" 2>/dev/null) || fail 11 "no process $pid"
	# The fields after the command's name, which may hold anything: the
	# 22nd of the stat, the start time, is the 20th of them.
	set -- ${st##*) }
	[ "${20}" = "$start" ] || fail 11 "process $pid started at ${20}, not $start"
	kill -KILL "$pid" 2>/dev/null || fail 14 "cannot kill $pid"
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
