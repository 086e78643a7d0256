# Runs one program in a one-shot runner, then leaves the container as it
# was: see protocol.go, which reads what this prints.
#
# $1 is the timeout in seconds, or "after" when the spawner has run the
# program (see spawner.py); $2 the most artifacts to send, $3 the largest
# artifact and $4 the largest result, in bytes, $5 1 to seed the writable
# places as the image wants and report their modes (the spawner does both
# otherwise); the rest is the program. Standard input is a line with a
# nonce, then the program's own input, or, after the spawner's run, its
# exit code and elapsed centiseconds. The program's stdout and stderr pass
# straight through; after it and every process it started are gone,
# stdout gets the report, between two nonce lines, then what the cleanup
# found, up to a third. The program never sees the nonce, so it cannot
# forge a report.
IFS= read -r nonce || exit 90
limit=$1 nart=$2 artmax=$3 resmax=$4 seed=$5
shift 5
result=/tmp/.sandboxd-result
dirs='/workspace /tmp /dev/shm /dev/mqueue /run/sandboxd'
cd /workspace || exit 91
if [ "$limit" = after ]; then
	read -r rc elapsed || exit 90
else
	read -r t0 _ </proc/uptime
	timeout -k 2 "$limit" "$@" 3>"$result"
	rc=$?
	# Every process this user may signal dies, this one aside: whatever
	# the program left running, detached or not. PID 1, the container's
	# keeper, runs as another user. A fork racing the kill fails, as the
	# kernel wants.
	kill -KILL -1 2>/dev/null
	kill -KILL -1 2>/dev/null
	read -r t1 _ </proc/uptime
	elapsed=$((${t1%.*}${t1#*.} - ${t0%.*}${t0#*.}))
fi
# The program's stderr ends here, so that the answer may go out before
# the cleanup.
exec 2>/dev/null
printf '%s\nrc %s\nelapsed_cs %s\n' "$nonce" "$rc" "$elapsed"

# Artifacts: regular files of known kinds in artifacts/ or the working dir.
set --
n=0
for f in artifacts/* *; do
	[ -f "$f" ] && [ ! -L "$f" ] || continue
	name=${f#artifacts/}
	case $name in
	*[[:cntrl:]]*) continue ;;
	*.[pP][nN][gG] | *.[jJ][pP][gG] | *.[jJ][pP][eE][gG] | *.[sS][vV][gG] | *.[pP][dD][fF] | *.[cC][sS][vV] | *.[jJ][sS][oO][nN] | *.[hH][tT][mM][lL]) ;;
	*) continue ;;
	esac
	# One in artifacts/ wins over one of the same name beside it.
	[ "$f" = "$name" ] && [ -e "artifacts/$name" ] && continue
	if [ "$n" -ge "$nart" ]; then
		printf 'dropped %s\n' "$name"
		continue
	fi
	n=$((n + 1))
	set -- "$@" "$f"
done
# What the program reported, one line of JSON; the daemon finds it too
# large when it holds more than $resmax bytes.
printf 'program\n'
head -c "$((resmax + 1))" -- "$result"
printf '\n'
[ $# -gt 0 ] && stat -c %s -- "$@" | {
	for f; do
		read -r size
		if [ "$size" -gt "$artmax" ]; then
			printf 'too_large %s %s\n' "$size" "${f#artifacts/}"
		elif [ "$size" -gt 0 ]; then
			printf 'artifact %s %s\n' "$size" "${f#artifacts/}"
			cat -- "$f"
		fi
	done
}

printf '%s\n' "$nonce"

# The spawner wipes and checks itself, once every process is gone.
if [ "$seed" != 1 ]; then
	printf '%s\n' "$nonce"
	exit 0
fi
# Wipe every place the program could write, then check that all is as
# when the runner was made: no file, no process, no IPC object. The
# spawner's socket stays.
set --
for d in $dirs; do
	for f in "$d"/* "$d"/.[!.]* "$d"/..?*; do
		[ "$f" = /run/sandboxd/jupyter.sock ] || set -- "$@" "$f"
	done
done
rm -rf -- "$@" 2>/dev/null || { chmod -R u+rwx -- "$@" 2>/dev/null; rm -rf -- "$@" 2>/dev/null; }
for f; do
	[ -e "$f" ] || [ -L "$f" ] && printf 'dirty file %s\n' "$f"
done
for p in /proc/[0-9]*; do
	pid=${p#/proc/}
	[ "$pid" = 1 ] || [ "$pid" = $$ ] && continue
	IFS= read -r st 2>/dev/null <"$p/stat" || continue
	set -- ${st##*) }
	# Dead but not yet reaped, or not this user's: the keeper's sleep.
	[ "$1" = Z ] || [ ! -O "$p" ] && continue
	printf 'dirty process %s\n' "$pid"
done
for ipc in shm sem msg; do
	{ read -r _ && read -r line; } <"/proc/sysvipc/$ipc" 2>/dev/null && [ -n "$line" ] && printf 'dirty ipc %s\n' "$ipc"
done
set -- $(stat -c %a:%u -- $dirs)
printf 'modes %s\n' "$*"
# What the image seeds its user's writable places with: matplotlib's font
# cache, which takes seconds to build.
[ -d /opt/matplotlib ] && [ -n "${MPLCONFIGDIR:-}" ] && cp -r /opt/matplotlib "$MPLCONFIGDIR"
printf '%s\n' "$nonce"
