complete -c xsync -l info -d 'fine-grained informational verbosity (xsync: progress0-2, name0-1)' -r -f
complete -c xsync -l progress -d 'show progress during transfer (--progress=bar: one bar for the whole run, as --info=progress2, drawn where stdout is a terminal)' -r -f
complete -c xsync -l out-format -d 'output updates using the specified FORMAT' -r -f
complete -c xsync -l log-file -d 'log what we\'re doing to the specified FILE' -r -F
complete -c xsync -l log-file-format -d 'log updates using the specified FMT' -r -f
complete -c xsync -l max-size -d 'don\'t transfer any file larger than SIZE' -r -f
complete -c xsync -l min-size -d 'don\'t transfer any file smaller than SIZE' -r -f
complete -c xsync -s @ -l modify-window -d 'set the accuracy for mod-time comparisons (0: whole seconds; negative: nanoseconds)' -r -f
complete -c xsync -l chmod -d 'affect file and/or directory permissions' -r -f
complete -c xsync -l usermap -d 'custom username mapping' -r -f
complete -c xsync -l groupmap -d 'custom groupname mapping' -r -f
complete -c xsync -l chown -d 'simple username/groupname mapping' -r -f
complete -c xsync -l backup-dir -d 'make backups into hierarchy based in DIR' -r -f -a "(__fish_complete_directories)"
complete -c xsync -l suffix -d 'backup suffix (default ~ w/o --backup-dir)' -r -f
complete -c xsync -l checksum-choice -d 'choose the checksum algorithm (accepted: xsync\'s own are used)' -r -f
complete -c xsync -s B -l block-size -d 'force a fixed checksum block-size' -r -f
complete -c xsync -l partial-dir -d 'put a partially transferred file into DIR (a name beside each file, or an absolute path)' -r -f
complete -c xsync -s T -l temp-dir -d 'create temporary files in directory DIR' -r -f -a "(__fish_complete_directories)"
complete -c xsync -l compare-dest -d 'also compare destination files relative to DIR' -r -f -a "(__fish_complete_directories)"
complete -c xsync -l copy-dest -d '... and include copies of unchanged files' -r -f -a "(__fish_complete_directories)"
complete -c xsync -l link-dest -d 'hardlink to files in DIR when unchanged' -r -f -a "(__fish_complete_directories)"
complete -c xsync -s e -l rsh -d 'specify the remote shell to use' -r -f -a "(__fish_complete_command)"
complete -c xsync -l xsync-path -d 'specify the xsync to run on the remote machine' -r -f
complete -c xsync -l rsync-path -d 'rsync\'s spelling: the same, with a word naming rsync run as xsync ("sudo rsync")' -r -f
complete -c xsync -l streams -d 'data streams over ssh: N channels of one login (1: one stream; default: by the link)' -r -f
complete -c xsync -l timeout -d 'set I/O timeout in seconds (0: none; a local copy has no connection to time out)' -r -f
complete -c xsync -l contimeout -d 'daemon connection timeout: refused, as rsync refuses it without a daemon' -r -f
complete -c xsync -l compress-choice -d 'choose the compression algorithm (xsync compresses with zstd)' -r -f
complete -c xsync -l compress-level -d 'explicitly set compression level' -r -f
complete -c xsync -l bwlimit -d 'limit socket I/O bandwidth (KiB/s; suffixes K, M, G, KB = 1000; 0: no limit)' -r -f
complete -c xsync -l protocol -d 'force an older protocol version to be used (accepted: no effect on xsync\'s protocol)' -r -f
complete -c xsync -l iconv -d 'request charset conversion of filenames (refused: names are copied as bytes)' -r -f
complete -c xsync -l max-delete -d 'don\'t delete more than NUM files' -r -f
complete -c xsync -s f -l filter -d 'add a file-filtering RULE' -r -f
complete -c xsync -l exclude -d 'exclude files matching PATTERN' -r -f
complete -c xsync -l exclude-from -d 'read exclude patterns from FILE' -r -F
complete -c xsync -l include -d 'don\'t exclude files matching PATTERN' -r -f
complete -c xsync -l include-from -d 'read include patterns from FILE' -r -F
complete -c xsync -l files-from -d 'read list of source-file names from FILE ("-": stdin)' -r -F
complete -c xsync -s v -l verbose -d 'increase verbosity'
complete -c xsync -s q -l quiet -d 'suppress non-error messages'
complete -c xsync -l stats -d 'give some file-transfer stats'
complete -c xsync -s h -l human-readable -d 'output numbers in a human-readable format'
complete -c xsync -s P -d 'same as --partial --progress'
complete -c xsync -s i -l itemize-changes -d 'output a change-summary for all updates'
complete -c xsync -l json -d 'print the run as NDJSON records on stdout: one per file transferred, deleted or failed, and a final summary (schema in docs/JSON.md)'
complete -c xsync -l list-only -d 'list the files instead of copying them'
complete -c xsync -s c -l checksum -d 'skip based on checksum, not mod-time & size'
complete -c xsync -s u -l update -d 'skip files that are newer on the receiver'
complete -c xsync -l existing -d 'skip creating new files on receiver'
complete -c xsync -l ignore-existing -d 'skip updating files that exist on receiver'
complete -c xsync -l remove-source-files -d 'sender removes synchronized files (non-directory)'
complete -c xsync -s I -l ignore-times -d 'don\'t skip files that match size and time'
complete -c xsync -l size-only -d 'skip files based on size only, not mod-time'
complete -c xsync -s a -l archive -d 'archive mode is -rlptgoD (no -A,-X,-U,-N,-H)'
complete -c xsync -s r -l recursive -d 'recurse into directories'
complete -c xsync -l inc-recursive -d 'enable incremental recursion (accepted: xsync\'s walk is its own)'
complete -c xsync -s R -l relative -d 'use relative path names'
complete -c xsync -l no-implied-dirs -d 'don\'t send implied directories with --relative'
complete -c xsync -s d -l dirs -d 'transfer directories without recursing'
complete -c xsync -l mkpath -d 'create destination\'s missing path components'
complete -c xsync -s x -l one-file-system -d 'don\'t cross filesystem boundaries'
complete -c xsync -s l -l links -d 'copy symlinks as symlinks'
complete -c xsync -s L -l copy-links -d 'transform symlink into referent file/dir'
complete -c xsync -l copy-unsafe-links -d 'only "unsafe" symlinks are transformed'
complete -c xsync -l safe-links -d 'ignore symlinks that point outside the tree'
complete -c xsync -l munge-links -d 'munge symlinks to make them safe & unusable'
complete -c xsync -s k -l copy-dirlinks -d 'transform symlink to dir into referent dir'
complete -c xsync -s K -l keep-dirlinks -d 'treat symlinked directory on receiver as directory'
complete -c xsync -s H -l hard-links -d 'preserve hard links'
complete -c xsync -s p -l perms -d 'preserve permissions'
complete -c xsync -s E -l executability -d 'preserve executability'
complete -c xsync -s A -l acls -d 'preserve ACLs (implies --perms)'
complete -c xsync -s X -l xattrs -d 'preserve extended attributes'
complete -c xsync -s o -l owner -d 'preserve owner (super-user only)'
complete -c xsync -s g -l group -d 'preserve group'
complete -c xsync -l devices -d 'preserve device files (super-user only)'
complete -c xsync -l specials -d 'preserve special files'
complete -c xsync -s D -d 'same as --devices --specials'
complete -c xsync -s t -l times -d 'preserve modification times'
complete -c xsync -s U -l atimes -d 'preserve access (use) times'
complete -c xsync -l open-noatime -d 'avoid changing the atime on opened files'
complete -c xsync -s N -l crtimes -d 'preserve create times (newness)'
complete -c xsync -s O -l omit-dir-times -d 'omit directories from --times'
complete -c xsync -s J -l omit-link-times -d 'omit symlinks from --times'
complete -c xsync -l fake-super -d 'store/recover privileged attrs using xattrs'
complete -c xsync -l numeric-ids -d 'don\'t map uid/gid values by user/group name'
complete -c xsync -s b -l backup -d 'make backups (see --suffix & --backup-dir)'
complete -c xsync -l inplace -d 'update destination files in-place (not atomic: an interrupted file is left part updated)'
complete -c xsync -l append -d 'append data onto shorter files'
complete -c xsync -l append-verify -d '--append w/old data in file checksum'
complete -c xsync -s S -l sparse -d 'turn sequences of nulls into sparse blocks'
complete -c xsync -s n -l dry-run -d 'perform a trial run with no changes made'
complete -c xsync -s W -l whole-file -d 'copy files whole (w/o delta-xfer algorithm)'
complete -c xsync -l no-whole-file -d 'use the delta-xfer algorithm'
complete -c xsync -l partial -d 'keep partially transferred files (they become the next run\'s delta basis)'
complete -c xsync -l delay-updates -d 'put all updated files into place at end'
complete -c xsync -l fsync -d 'fsync every written file'
complete -c xsync -l no-deploy -d 'never install xsync on a remote that lacks it (also: XSYNC_NO_DEPLOY=1)'
complete -c xsync -s z -l compress -d 'compress file data during the transfer (zstd; by default only where it pays)'
complete -c xsync -l no-compress -d 'send file data raw over the wire, never compressed'
complete -c xsync -l old-args -d 'the remote shell\'s word-splitting of remote paths, as rsync before 3.2.4'
complete -c xsync -s s -l secluded-args -d 'names travel inside the protocol, never through the remote shell (always on)'
complete -c xsync -l blocking-io -d 'use blocking I/O for the remote shell (xsync\'s pipes always are)'
complete -c xsync -s 4 -l ipv4 -d 'prefer IPv4 (passed to ssh as -4)'
complete -c xsync -s 6 -l ipv6 -d 'prefer IPv6 (passed to ssh as -6)'
complete -c xsync -l delete -d 'delete extraneous files from dest dirs'
complete -c xsync -l delete-before -d 'receiver deletes before xfer, not during'
complete -c xsync -l delete-during -d 'receiver deletes during the transfer'
complete -c xsync -l delete-delay -d 'find deletions during, delete after'
complete -c xsync -l delete-after -d 'receiver deletes after transfer, not during'
complete -c xsync -l delete-excluded -d 'also delete excluded files from dest dirs'
complete -c xsync -l ignore-errors -d 'delete even if there are I/O errors'
complete -c xsync -l force -d 'force deletion of directories even if not empty (xsync: always)'
complete -c xsync -l ignore-missing-args -d 'ignore missing source args without error'
complete -c xsync -l delete-missing-args -d 'delete missing source arguments from destination'
complete -c xsync -s m -l prune-empty-dirs -d 'prune empty directory chains from the file-list'
complete -c xsync -s C -l cvs-exclude -d 'auto-ignore files in the same way CVS does'
complete -c xsync -s F -d 'same as --filter=\'dir-merge /.rsync-filter\''
complete -c xsync -s 0 -l from0 -d 'all *-from/filter files are delimited by 0s'
complete -c xsync -s V -l version -d 'print version number'
complete -c xsync -l help -d 'show this help (as -h does when it is alone)'
